"""`signals bench`: the worker's code path measured, everything in one run, written as JSON.

Only ratios between numbers of one run mean much on a shared, noisy machine; absolute numbers do
not travel. The input is read as replay reads a file (`stream.replay.sources.FileSource`), eval's
``"expected"`` labels are dropped so golden events validate as the worker would see them (a bad
line stays and is dead-lettered, as in the worker), then it is shuffled with a fixed seed (a live
topic mixes content types and lengths) and cycled to ``--events``. Measured:

1. `process_batch` per batch size: events/s and per-batch latency after an untimed warm-up. The
   sizes take turns on each segment of the input, the order rotating, so a slow spell of a shared
   machine hits every size alike;
2. at the largest batch size, where `process_batch`'s time goes: its calls of `pipeline.validate`,
   of the encoder and of the whole `Enricher.enrich` (encoder, language, heads) timed from inside,
   in their real order (the rest is building the output records);
3. the encoder with several bucket sizes (``--bucket-sizes`` and the configured
   ``encoder_bucket_size``) against one bucket per batch (padded to its longest text): padded
   tokens and time, on the same batches, taking turns;
4. ONNX Runtime's thread spinning (``model_spinning``) on and off, same batches, taking turns:
   wall and CPU time per event at the smallest and largest batch size;
5. model load (`build_pipeline`: manifest, sha256 checks, sessions) and peak RSS after it, after
   the batch sizes (what a worker reaches) and after the run (pad-to-longest and a second
   pipeline included);
6. every model profile of the manifest (``default``, ``fast`` ...) against issue #11's naive
   agent (the v1 encoder alone, one padded text per call), with each profile's recorded head
   quality beside its speed (`stream.bench.profiles`);
7. with ``--live``, the real worker draining a backlog on a fresh local broker against its
   `process_batch` on the same events (`stream.bench.live`);
8. the environment: versions, CPUs, settings, the models that ran, the git commit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import random
import resource
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import onnxruntime
import orjson
import tokenizers

from stream.bench.profiles import compare_profiles
from stream.buildinfo import git_commit
from stream.core.batching import MicroBatcher, length_buckets
from stream.core.builder import build_pipeline
from stream.core.pipeline import Pipeline, process_batch
from stream.core.records import ContentEvent, RawMessage
from stream.errors import ConfigError, InputFileError
from stream.models.encoder import TextEncoder
from stream.models.onnx_session import sha256_of
from stream.paths import DATA_ROOT
from stream.replay.sources import FileSource, count_lines
from stream.settings import Settings

DEFAULT_DATA = (DATA_ROOT / "tests" / "golden" / "events.jsonl",
                DATA_ROOT / "deploy" / "demo" / "events.jsonl")
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class BenchRequest:
    data: tuple[Path, ...]          # empty: DEFAULT_DATA
    events: int
    batch_sizes: tuple[int, ...]
    out: Path
    seed: int = 0
    bucket_sizes: tuple[int, ...] = (8, 16, 32)  # compared with pad-to-longest, and the setting
    live: bool = False   # also the real worker on a local broker (`stream.bench.live`)
    live_threads: tuple[int, ...] = ()  # its ONNX thread counts; empty: the configured one
    live_workers: tuple[int, ...] = (1,)   # its numbers of worker processes (one group each)


def run_bench(request: BenchRequest, settings: Settings) -> dict[str, Any]:
    """Check the input and `out` (before the models load), measure, write the JSON result."""
    paths = request.data or DEFAULT_DATA
    loaded = [read_events(path) for path in paths]
    too_large = [size for size in request.batch_sizes if size > request.events]
    if too_large:
        raise ConfigError(f"--batch-sizes {too_large[0]} is larger than --events "
                          f"{request.events}: a batch cannot hold more events than the run has")
    writable(request.out)
    corpus = cycle([m for messages in loaded for m in messages], request.events, request.seed)
    result = measure(settings, corpus, request.batch_sizes, request.bucket_sizes)
    if request.live:
        from stream.bench.live import live_worker  # the broker's code only when asked

        result["live_worker"] = live_worker(settings, corpus, request.live_threads,
                                            workers=request.live_workers)
    result["input"] = {"files": [{"path": str(p), "sha256": sha256_of(p), "events": len(m)}
                                 for p, m in zip(paths, loaded, strict=True)],
                       "events": request.events, "seed": request.seed}
    try:
        request.out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    except OSError as exc:
        raise ConfigError(f"cannot write {request.out}: {exc.strerror}") from exc
    return result


def read_events(path: Path) -> list[RawMessage]:
    """A file's non-blank lines as replay reads them (plain or gzip), eval's labels dropped."""
    source = FileSource(path, 1024, {0: (1, count_lines(path) + 1)})  # unreadable: InputFileError
    messages = [without_labels(m) for batch in source.batches({0: 1}) for m in batch.messages]
    if not messages:
        raise InputFileError(f"{path} has no events (one JSON content event per line expected)")
    return messages


def without_labels(message: RawMessage) -> RawMessage:
    """Golden-set lines carry ``"expected"``, which the event schema rejects: drop it, as
    `signals eval` does. Any other line is left byte for byte."""
    try:
        event = orjson.loads(message.value or b"")
    except orjson.JSONDecodeError:
        return message
    if not isinstance(event, dict) or "expected" not in event:
        return message
    del event["expected"]
    return dataclasses.replace(message, value=orjson.dumps(event))


def cycle(messages: Sequence[RawMessage], events: int, seed: int) -> list[RawMessage]:
    mixed = list(messages)
    random.Random(seed).shuffle(mixed)
    return [mixed[i % len(mixed)] for i in range(events)]


def writable(path: Path) -> None:
    """Fail before a long run, not after it, when the result cannot be written."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from exc
    if path.is_dir() or not os.access(path.parent, os.W_OK):
        raise ConfigError(f"cannot write {path}: it is a folder or its folder is read-only")


def measure(settings: Settings, corpus: list[RawMessage], sizes: Sequence[int],
            bucket_sizes: Sequence[int]) -> dict[str, Any]:
    rss_start = peak_rss_mib()
    started = time.perf_counter()
    pipeline = build_pipeline(settings)
    load_s = time.perf_counter() - started
    rss_loaded = peak_rss_mib()
    largest = max(sizes)
    runs = throughput(pipeline, corpus, sorted(sizes))
    rss_processed = peak_rss_mib()   # what a worker at these batch sizes would reach
    return {"throughput": runs, "stages": stages(pipeline, corpus, largest),
            "bucketing": bucketing(pipeline, batches(corpus, largest), bucket_sizes),
            "thread_spinning": thread_spinning(settings, pipeline, corpus, sorted(sizes)),
            "profiles": compare_profiles(settings, batches(corpus, largest), pipeline),
            "model_load_s": _round(load_s),
            "peak_rss_mib": {"before_load": rss_start, "after_load": rss_loaded,
                             "after_throughput": rss_processed, "after_run": peak_rss_mib()},
            "environment": environment(settings, pipeline)}


def batches(messages: Sequence[RawMessage], size: int) -> list[list[RawMessage]]:
    """Cut by size with `MicroBatcher`, as replay cuts; the wait never runs out here."""
    batcher = MicroBatcher[RawMessage](max_size=size, max_wait_s=float("inf"))
    full = [batch for m in messages if (batch := batcher.add(m, 0.0)) is not None]
    rest = batcher.flush()
    return full + ([rest] if rest else [])


def rotated(items: Sequence[T], turn: int) -> list[T]:
    """`items` starting at a different one each turn: a slow spell hits each alike."""
    k = turn % len(items)
    return [*items[k:], *items[:k]]


def throughput(pipeline: Pipeline, corpus: Sequence[RawMessage],
               sizes: list[int]) -> list[dict[str, Any]]:
    """Every size on one segment (the largest batch) after another, the order rotating."""
    seconds: dict[int, list[float]] = {size: [] for size in sizes}
    counts = {size: [0, 0] for size in sizes}  # signals, dead letters
    for size in sizes:
        process_batch(pipeline, corpus[:size])  # warm-up, not counted
    for turn, segment in enumerate(batches(corpus, sizes[-1])):
        for size in rotated(sizes, turn):
            for batch in batches(segment, size):
                started = time.perf_counter()
                output = process_batch(pipeline, batch)
                seconds[size].append(time.perf_counter() - started)
                counts[size][0] += len(output.signals)
                counts[size][1] += len(output.dead_letters)
    slowest = len(corpus) / sum(seconds[sizes[0]])
    return [{"batch_size": size, "batches": len(seconds[size]), "events": len(corpus),
             "signals": counts[size][0], "dead_letters": counts[size][1],
             "seconds": _round(sum(seconds[size])),
             "events_per_s": _round(len(corpus) / sum(seconds[size])),
             "throughput_vs_smallest_batch": _round(len(corpus) / sum(seconds[size]) / slowest),
             "latency_ms": latency_ms(seconds[size])} for size in sizes]


def thread_spinning(settings: Settings, pipeline: Pipeline, corpus: Sequence[RawMessage],
                    sizes: list[int]) -> list[dict[str, Any]]:
    """The configured ``model_spinning`` against the other choice, at the smallest and largest
    batch size, taking turns per segment: wall time and CPU time (all threads) per event."""
    pipelines = {settings.model_spinning: pipeline,
                 not settings.model_spinning: build_pipeline(
                     settings.replace(model_spinning=not settings.model_spinning))}
    results = []
    for size in sorted({sizes[0], sizes[-1]}):
        wall = dict.fromkeys(pipelines, 0.0)
        cpu = dict.fromkeys(pipelines, 0.0)
        for each in pipelines.values():
            process_batch(each, corpus[:size])  # warm-up, not counted
        for turn, segment in enumerate(batches(corpus, sizes[-1])):
            for spinning in rotated(list(pipelines), turn):
                started, cpu_started = time.perf_counter(), time.process_time()
                for batch in batches(segment, size):
                    process_batch(pipelines[spinning], batch)
                wall[spinning] += time.perf_counter() - started
                cpu[spinning] += time.process_time() - cpu_started
        results.append({"batch_size": size, **{
            ("spinning" if spinning else "no_spinning"): {
                "events_per_s": _round(len(corpus) / wall[spinning]),
                "cpu_ms_per_event": _round(cpu[spinning] * 1000 / len(corpus))}
            for spinning in (True, False)},
            "wall_ratio_spinning_vs_not": _round(wall[True] / wall[False])})
    return results


def latency_ms(seconds: Sequence[float]) -> dict[str, float]:
    ms = np.array(seconds) * 1000
    return {"p50": _round(np.percentile(ms, 50)), "p95": _round(np.percentile(ms, 95)),
            "max": _round(ms.max())}


def stages(pipeline: Pipeline, corpus: Sequence[RawMessage], size: int) -> dict[str, Any]:
    """Where `process_batch`'s time goes: its own calls of `pipeline.validate`, the enricher's
    `enrich` and the encoder's `encode`, timed from inside while it runs in its real order."""
    spent = dict.fromkeys(("validate", "encoder", "enrich", "process_batch"), 0.0)
    inside = dataclasses.replace(pipeline, validate=timed(pipeline.validate, spent, "validate"))
    enricher = pipeline.enricher
    with timing(enricher.encoder, "encode", spent, "encoder"), \
            timing(enricher, "enrich", spent, "enrich"):
        for batch in batches(corpus, size):
            started = time.perf_counter()
            process_batch(inside, batch)
            spent["process_batch"] += time.perf_counter() - started
    total = spent["process_batch"]
    share = {"validate": spent["validate"] / total, "encoder": spent["encoder"] / total,
             "language_and_heads": (spent["enrich"] - spent["encoder"]) / total,
             "output_records": (total - spent["validate"] - spent["enrich"]) / total}
    return {"batch_size": size, "seconds": {k: _round(v) for k, v in spent.items()},
            "share_of_process_batch": {k: _round(v) for k, v in share.items()}}


def timed(call: Callable[..., R], spent: dict[str, float], stage: str) -> Callable[..., R]:
    def wrapper(*args: Any, **kwargs: Any) -> R:
        started = time.perf_counter()
        try:
            return call(*args, **kwargs)
        finally:
            spent[stage] += time.perf_counter() - started
    return wrapper


@contextlib.contextmanager
def timing(owner: object, method: str, spent: dict[str, float], stage: str) -> Iterator[None]:
    """`owner.method` timed into ``spent[stage]`` while inside (an instance attribute shadows
    the class's method; deleting it restores the method)."""
    setattr(owner, method, timed(getattr(owner, method), spent, stage))
    try:
        yield
    finally:
        delattr(owner, method)


def valid_events(pipeline: Pipeline, batch: Sequence[RawMessage]) -> list[ContentEvent]:
    checked = [pipeline.validate(message.value) for message in batch]
    return [event for event in checked if isinstance(event, ContentEvent)]


def bucketing(pipeline: Pipeline, cut: Sequence[Sequence[RawMessage]],
              bucket_sizes: Sequence[int]) -> dict[str, Any]:
    """Bucket sizes (the configured one included) against one bucket as large as the batch (pad
    to longest), on the same texts, taking turns batch by batch."""
    encoder = pipeline.enricher.encoder
    texts = [[e.model_text for e in valid_events(pipeline, b) if e.has_text] for b in cut]
    batch = max(len(t) for t in texts)
    sizes = sorted(b for b in {*bucket_sizes, encoder.bucket_size} if b < batch)  # else: one
    variants = [(f"bucket_{size}", size) for size in sizes] + [("pad_to_longest", batch)]
    seconds = {name: 0.0 for name, _ in variants}
    tokens = {name: 0 for name, _ in variants} | {"real": 0}
    for _, size in variants:   # warm-up: each bucket layout's shapes once, untimed
        with bucket_size(encoder, size):
            encoder.encode(texts[0])
    for i, batch_texts in enumerate(texts):
        for name, size in rotated(variants, i):
            with bucket_size(encoder, min(size, max(1, len(batch_texts)))):
                started = time.perf_counter()
                encoder.encode(batch_texts)
                seconds[name] += time.perf_counter() - started
            tokens[name] += padded_tokens(encoder, batch_texts, size)
        tokens["real"] += padded_tokens(encoder, batch_texts, 1)
    return {"batch_size": batch, "configured_bucket_size": encoder.bucket_size,
            "batches": len(cut), "real_tokens": tokens["real"],
            "variants": [{"name": name, "bucket_size": size, "tokens": tokens[name],
                          "seconds": _round(seconds[name]),
                          "speedup_vs_pad_to_longest": _round(
                              seconds["pad_to_longest"] / max(seconds[name], 1e-9))}
                         for name, size in variants]}


def padded_tokens(encoder: TextEncoder, texts: Sequence[str], bucket: int) -> int:
    """Tokens the encoder is fed, padding included: the tokenizer and buckets it uses."""
    lengths = [len(e.ids) for e in encoder.tokenizer.encode_batch(list(texts))]
    return sum(len(b) * max(lengths[i] for i in b) for b in length_buckets(lengths, bucket))


@contextlib.contextmanager
def bucket_size(encoder: TextEncoder, size: int) -> Iterator[None]:
    saved, encoder.bucket_size = encoder.bucket_size, size
    try:
        yield
    finally:
        encoder.bucket_size = saved


def environment(settings: Settings, pipeline: Pipeline) -> dict[str, Any]:
    affinity = getattr(os, "sched_getaffinity", None)
    return {"python": platform.python_version(), "platform": platform.platform(),
            "onnxruntime": onnxruntime.__version__, "numpy": np.__version__,
            "tokenizers": tokenizers.__version__, "cpu_count": os.cpu_count(),
            "cpus_usable": len(affinity(0)) if affinity else None,
            "model_threads": settings.model_threads, "model_spinning": settings.model_spinning,
            "encoder_bucket_size": settings.encoder_bucket_size,
            "include_embedding": settings.include_embedding,
            "manifest": str(settings.manifest_path), "models": pipeline.enricher.versions,
            "git_commit": git_commit(),
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds")}


def peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # bytes on macOS, KiB elsewhere
    return _round(peak / (1 << 20) if sys.platform == "darwin" else peak / 1024)


def _round(value: Any) -> float:
    return round(float(value), 4)
