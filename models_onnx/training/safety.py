"""The safety head: three independent sigmoids (offensive, hate, explicit), each selected and
fitted on the corpora that define it, thresholded by THRESHOLD_RULE, stacked into one graph."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models_onnx.training.artefacts import Context, head_entry, provenance, write_outputs
from models_onnx.training.catalogue import SAFETY, SAFETY_REFERENCES
from models_onnx.training.common import Array, r4
from models_onnx.training.estimators import Estimator, predict
from models_onnx.training.head_onnx import build_graph, layers_of, save_and_verify
from models_onnx.training.pools import Pool, Source
from models_onnx.training.probes import lingua_probe
from models_onnx.training.reports import binary_report, reference_block
from models_onnx.training.selection import (
    THRESHOLD_RULE,
    Selection,
    Selector,
    choose_threshold,
    fit_final,
    selection_report,
)
from stream.evaluation.metrics import LabelCounts, averages
from stream.models.manifest import ManifestEntry
from stream.models.shadow import reference_distribution


@dataclass
class SafetyLabel:
    """One sigmoid of the safety head, fitted on the rows of the corpora that define it."""

    label: str
    pool: Pool
    selector: Selector
    sel: Selection
    model: Estimator
    p_val: Array  # p(label) on the pooled validation rows
    threshold: dict[str, Any]


def train_safety_label(label: str, sources: Sequence[Source], ctx: Context) -> SafetyLabel:
    """Select and refit one safety label; its threshold from the out-of-fold predictions."""
    print(f"== safety/{label}", flush=True)
    pool = ctx.corpora.pool(sources, ["no", label], [True] * len(sources))
    name = "+".join(Path(s.file).stem for s in sources)
    selector = Selector({name: pool}, "average_precision")
    sel = selector.run()
    model, p_val = fit_final(pool, sel.config)
    rows = ~pool.is_val
    threshold = choose_threshold(pool.y[rows] == 1, sel.oof[rows, 1], pool.weights()[rows])
    return SafetyLabel(label, pool, selector, sel, model, p_val[:, 1], threshold)


def reference_comparison(item: SafetyLabel, y: Array, src: Array, ref_file: str,
                         t: float) -> dict[str, Any]:
    """The TweetEval comparison of one label, at its threshold and at its max-F1 threshold."""
    k = next(k for k, s in enumerate(item.pool.sources) if s.file == ref_file)
    y_ref, p_ref = y[src == k].astype(int), item.p_val[src == k]
    t_f1 = item.threshold["max_f1"]["threshold"]
    at_f1 = reference_block(item.label, y_ref, (p_ref >= t_f1).astype(int))
    del at_f1["note"]
    return dict(reference_block(item.label, y_ref, (p_ref >= t).astype(int)),
                rows=f"{ref_file} validation rows", threshold=t,
                at_max_f1_threshold={"threshold": t_f1, **at_f1})


def safety_label_metrics(item: SafetyLabel) -> dict[str, Any]:
    """Pooled and per-source validation reports of one label at its threshold."""
    pool, t = item.pool, item.threshold["threshold"]
    y = pool.y[pool.is_val] == 1
    report = binary_report(y, item.p_val, t)
    src = pool.source[pool.is_val]
    report["per_source"] = {s.file: binary_report(y[src == k], item.p_val[src == k], t)
                            for k, s in enumerate(pool.sources)}
    ref_file = SAFETY_REFERENCES.get(item.label)
    if ref_file:
        report["reference_comparison"] = reference_comparison(item, y, src, ref_file, t)
    report["threshold"] = item.threshold
    report["selection"] = selection_report(item.selector, item.sel)
    return report


def safety_summary(per_label: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """Micro (pooled decisions) and macro (mean of the labels' reported values) P/R/F1."""
    counts = LabelCounts(**{k: np.array([m["confusion"][k] for m in per_label.values()],
                                        dtype=np.int64) for k in ("tp", "fp", "fn")})
    micro = averages(counts)
    return {"micro": {k: r4(micro[f"micro_{k}"]) for k in ("precision", "recall", "f1")},
            "macro": {k: r4(np.mean([m[k] for m in per_label.values()]))
                      for k in ("precision", "recall", "f1")}}


def safety_headline(per_label: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    headline: dict[str, Any] = {}
    for label, m in per_label.items():
        headline.update({f"{label}_f1": m["f1"], f"{label}_precision": m["precision"],
                         f"{label}_recall": m["recall"],
                         f"{label}_average_precision": m["average_precision"]})
        if "reference_comparison" in m:
            headline[f"{label}_tweeteval_macro_f1"] = m["reference_comparison"]["ours"] / 100
    return headline


def safety_metrics(items: Sequence[SafetyLabel], ctx: Context, path: Path,
                   thresholds: Mapping[str, float], check: dict[str, Any]) -> dict[str, Any]:
    """The validation report of the stacked safety head."""
    per_label = {it.label: safety_label_metrics(it) for it in items}
    return {"headline": safety_headline(per_label), "per_label": per_label,
            **safety_summary(per_label), "thresholds": dict(thresholds),
            "threshold_rule": THRESHOLD_RULE, "onnx_check": check,
            "non_english_probe": lingua_probe(path, list(thresholds), ctx.probe_rows,
                                              ctx.probe_x, thresholds=thresholds)}


def export_safety(items: Sequence[SafetyLabel], version: str, path: Path) -> dict[str, Any]:
    """The stacked sigmoid graph, saved and checked on every label's validation rows."""
    labels = [it.label for it in items]
    graph = build_graph([layers_of(it.model, 1) for it in items], "sigmoid", version,
                        {"labels": json.dumps(labels), "task": "safety"})
    x_val = np.concatenate([it.pool.x[it.pool.is_val] for it in items])
    expected = np.column_stack([predict(it.model, x_val, 2)[:, 1] for it in items])
    return save_and_verify(graph, path, x_val, expected)


def safety_reference(items: Sequence[SafetyLabel],
                     thresholds: Mapping[str, float]) -> dict[str, Any]:
    return reference_distribution(
        {it.label: it.p_val for it in items},
        {it.label: int((it.p_val >= thresholds[it.label]).sum()) for it in items},
        "per label: the pooled validation rows of the corpora that define it",
        totals={it.label: len(it.p_val) for it in items})


def train_safety(ctx: Context) -> ManifestEntry:
    """Three sigmoids, each on its own corpora, stacked into one graph."""
    started = time.process_time()
    items = [train_safety_label(label, sources, ctx) for label, sources in SAFETY.items()]
    labels = [it.label for it in items]
    kind = "mlp" if any(it.sel.config["kind"] == "mlp" for it in items) else "lr"
    version = ctx.version("safety", kind)
    path = ctx.out / f"{version}.onnx"
    check = export_safety(items, version, path)
    thresholds = {it.label: it.threshold["threshold"] for it in items}
    files = sorted({s.file for srcs in SAFETY.values() for s in srcs})
    metrics = safety_metrics(items, ctx, path, thresholds, check)
    metrics["provenance"] = provenance(ctx, files, files, items[0].pool, started)
    metrics["provenance"]["rows"] = {it.label: {"train": int((~it.pool.is_val).sum()),
                                                "val": int(it.pool.is_val.sum())} for it in items}
    write_outputs(ctx.out, "safety", labels, metrics, safety_reference(items, thresholds))
    return head_entry("safety", version, path, labels, True, thresholds,
                      metrics["headline"], ctx.corpora.hashes(files), encoder=ctx.encoder,
                      branches={it.label: it.sel.config for it in items},
                      threshold_rule=THRESHOLD_RULE)

