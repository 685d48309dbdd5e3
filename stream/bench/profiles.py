"""The bench's profile comparison: every model profile of the manifest against one naive agent.

The naive agent is issue #11's baseline: the v1 encoder alone (``NAIVE_ENCODER``, MiniLM-L6),
one text per call, padded to its 128 tokens, no heads; a fixed yardstick, so a slower encoder in
a profile shows as a lower ratio instead of moving the baseline. Each profile (``default``: the
manifest's active models, then every named one) runs the worker's `process_batch` at the largest
batch size. All of them take turns on each segment of the input, the order rotating, so a slow
spell hits each alike. Beside each profile's speed: the encoder it runs and every head's headline
metrics on its held-back validation split, as recorded in its manifest entry (``metrics``), and
the change of each against the default profile's head, and which encoders served its items
(`served_by`: the share of signal records with a signal from a head on each encoder; a cascade's
escalations and the language tier show there).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from stream.core.builder import build_pipeline
from stream.core.pipeline import BatchOutput, Pipeline, process_batch
from stream.core.records import ContentEvent, RawMessage
from stream.models.encoder import TextEncoder
from stream.models.manifest import Manifest, load_manifest, reads_encoder
from stream.settings import Settings

NAIVE_ENCODER = "minilm-l6-v2-int8-v1"
NAIVE_LENGTH = 128


def naive_agent(settings: Settings) -> tuple[str, Callable[[Sequence[str]], None]]:
    """The baseline: one padded call of the v1 encoder per text (heads and language not run)."""
    spec = load_manifest(settings.manifest_path).resolve("embedding", NAIVE_ENCODER)
    encoder = TextEncoder(spec, threads=settings.model_threads, bucket_size=1)

    def run(texts: Sequence[str]) -> None:
        for text in texts:
            ids = np.zeros((1, NAIVE_LENGTH), np.int64)
            mask = np.zeros_like(ids)
            tokens = encoder.tokenizer.encode(text).ids[:NAIVE_LENGTH]
            ids[0, :len(tokens)], mask[0, :len(tokens)] = tokens, 1
            encoder.model.run({"input_ids": ids, "attention_mask": mask})

    return spec.version, run


def compare_profiles(settings: Settings, segments: Sequence[Sequence[RawMessage]],
                     default: Pipeline) -> dict[str, Any]:
    """events/s of the naive agent and of every profile on the same segments, taking turns;
    a profile whose pipeline has a language tier is also run without it (``NAME/no-tier``,
    ``SIGNALS_LANGUAGE_TIER=false``): the tier's encoder serves the items in other languages,
    and on a mixed-language input it costs more than the profile's own encoder."""
    manifest = load_manifest(settings.manifest_path)
    pipelines = {"default": default, **{name: build_pipeline(settings.replace(profile=name))
                                        for name in sorted(manifest.profiles)}}
    pipelines |= {f"{name}/no-tier": build_pipeline(settings.replace(
                      profile=settings.profile if name == "default" else name, language_tier=False))
                  for name, pipeline in list(pipelines.items()) if pipeline.enricher.tier}
    naive_version, naive = naive_agent(settings)
    texts = [[e.model_text for e in map(default.validate, (m.value for m in segment))
              if isinstance(e, ContentEvent) and e.has_text] for segment in segments]
    names = ["naive", *pipelines]
    seconds = dict.fromkeys(names, 0.0)
    served: dict[str, Counter[str]] = {name: Counter() for name in pipelines}
    for pipeline in pipelines.values():
        process_batch(pipeline, segments[0])  # warm-up, not counted
    for turn, segment in enumerate(segments):
        k = turn % len(names)
        for name in names[k:] + names[:k]:
            started = time.perf_counter()
            if name == "naive":
                naive(texts[turn])
                seconds[name] += time.perf_counter() - started
            else:
                output = process_batch(pipelines[name], segment)
                seconds[name] += time.perf_counter() - started
                served[name].update(encoders_serving(manifest, output))
    events = sum(len(s) for s in segments)
    naive_rate = sum(len(t) for t in texts) / seconds["naive"]
    return {"naive_agent": {"encoder": naive_version, "padded_to": NAIVE_LENGTH,
                            "texts_per_s": round(naive_rate, 2)},
            "batch_size": max(len(s) for s in segments),
            "profiles": [{**profile_row(name, pipelines[name], manifest, events / seconds[name],
                                        naive_rate, default),
                          "served_by": {encoder: round(n / served[name]["records"], 4)
                                        for encoder, n in sorted(served[name].items())
                                        if encoder != "records"}}
                         for name in pipelines]}


def encoders_serving(manifest: Manifest, output: BatchOutput) -> Counter[str]:
    """Per encoder, the signal records of `output` with a signal from a head that reads it;
    ``records``: how many records had any head's signal."""
    counts: Counter[str] = Counter()
    for record in output.signals:
        encoders = {reads_encoder(manifest.resolve(task, signal.model))
                    for task, signal in record.signals.items()} - {None}
        counts.update({str(encoder) for encoder in encoders})
        counts["records"] += bool(encoders)
    return counts


def profile_row(name: str, pipeline: Pipeline, manifest: Manifest, rate: float,
                naive_rate: float, default: Pipeline) -> dict[str, Any]:
    cascade = manifest.cascade(name.split("/")[0]) if pipeline.enricher.cascade else None
    if cascade is not None and cascade.metrics:
        quality, vs_default = cascade_metrics(manifest.path.parent / cascade.metrics)
    else:
        quality, baseline = head_metrics(manifest, pipeline), head_metrics(manifest, default)
        vs_default = {task: {metric: round(value - baseline[task][metric], 4)
                             for metric, value in metrics.items()
                             if metric in baseline.get(task, {})}
                      for task, metrics in quality.items()}
    return {"profile": name, "models": pipeline.enricher.versions,
            "events_per_s": round(rate, 2), "vs_naive_agent": round(rate / naive_rate, 3),
            "quality": quality, "vs_default": vs_default}


def cascade_metrics(path: Path) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """A cascade's measured validation metrics and their difference from its strong heads
    alone (the default's heads), both from its report (``models_onnx/training/cascade.py``);
    safety's labels as ``<label>_f1``, as the heads record them."""
    report = orjson.loads(path.read_bytes())["validation"]
    quality: dict[str, dict[str, float]] = {}
    vs_default: dict[str, dict[str, float]] = {}
    for unit, block in report.items():
        task, _, label = unit.partition(".")
        prefix = f"{label}_" if label else ""
        quality.setdefault(task, {}).update(
            {prefix + k: v for k, v in block["cascade"].items()})
        vs_default.setdefault(task, {}).update(
            {prefix + k: v for k, v in block["cascade_minus_strong"].items()})
    return quality, vs_default


def head_metrics(manifest: Manifest, pipeline: Pipeline) -> dict[str, dict[str, float]]:
    """Each head's recorded validation headline (its manifest entry's ``metrics``)."""
    out = {}
    for model in pipeline.enricher.classifiers:
        metrics = manifest.resolve(model.task, model.version).extra("metrics", {})
        out[model.task] = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}
    return out
