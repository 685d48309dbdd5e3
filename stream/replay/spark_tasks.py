"""The executor side of `signals replay --engine spark`: what runs inside ``mapPartitions``.

One pipeline per executor process (`task_pipeline`), each Kafka partition cut into chunks by
the local replay's rule and run through `process_batch` (`process_partition`), and the windows
folded by the project's own `ReplayWindows` after a repartition by group (`fold_partition`).
Rows carry their kind first (`SIGNALS` ...) and a sort key that reproduces the local order.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any

from stream.core.batching import chunks
from stream.core.outputs import Record, serialise
from stream.core.pipeline import Pipeline, process_batch
from stream.replay.plan import Plan
from stream.replay.run import ReplayWindows, group_partition, replay_pipeline
from stream.replay.sources import chunk_order, in_time_range, topic_message
from stream.replay.state import ReplayCounts

if TYPE_CHECKING:
    from pyspark import RDD

# What a row of the job carries, first field; the sort keys make the local replay's order.
SIGNALS, DEAD_LETTERS, WINDOWS, ENRICHED, TALLY = range(5)
KINDS = {SIGNALS: "signals", DEAD_LETTERS: "dead_letters", WINDOWS: "windows"}
FLUSHED = 1 << 62         # sort key of the windows closed at the end: after every chunk's
_PIPELINES: dict[tuple[str, str, int], Pipeline] = {}   # one per executor process


def task_pipeline(plan: Plan) -> Pipeline:
    """The replay's pipeline, built once per Python worker (Spark reuses its workers) with as
    many ONNX threads as the task has CPUs."""
    from pyspark import TaskContext

    context = TaskContext.get()
    threads = max(1, context.cpus()) if context is not None else plan.settings.model_threads
    key = (plan.fingerprint, plan.replay_id, threads)
    if key not in _PIPELINES:
        _PIPELINES.clear()    # another replay in a reused worker: free the old models
        _PIPELINES[key] = replay_pipeline(plan, model_threads=threads)
    return _PIPELINES[key]


def process_partition(plan: Plan, rows: Iterable[Any]) -> Iterator[tuple[Any, ...]]:
    """One Kafka partition's rows (in offset order) → serialised records with their sort keys,
    the enriched records for the windows, and one tally row."""
    source = plan.request.source
    topic = source.topic or ""
    partition: int | None = None
    first = last = -1
    latest_start: int | None = None
    tally = ReplayCounts()
    pipeline: Pipeline | None = None
    for index, chunk in enumerate(chunks(rows, plan.settings.batch_max_size)):
        for row in chunk:
            if partition is None:
                partition, first = row.partition, row.offset
            elif row.partition != partition or row.offset <= last:
                raise RuntimeError(f"rows of Kafka partition {row.partition} offset {row.offset} "
                                   f"after partition {partition} offset {last}: a Spark "
                                   "partition must hold one Kafka partition in offset order")
            last = row.offset
        assert partition is not None
        start = chunk[0].ts
        latest_start = start if latest_start is None else max(latest_start, start)
        order = chunk_order(partition, index, latest_start)
        messages = [topic_message(topic, r.partition, r.offset, _bytes(r.key), _bytes(r.value),
                                  r.ts) for r in chunk if in_time_range(source, r.ts)]
        pipeline = pipeline or task_pipeline(plan)
        output = process_batch(pipeline, messages)
        yield from _serialised(SIGNALS, order, output.signals)
        yield from _serialised(DEAD_LETTERS, order, output.dead_letters)
        if plan.request.aggregate:
            for j, record in enumerate(output.enriched):
                where = group_partition(record.key, plan.settings.partitions)
                yield ENRICHED, ((where, *order, j), (record.group, record.to_json()))
        tally.add(ReplayCounts(read=len(chunk), signals=len(output.signals),
                               dead_letters=len(output.dead_letters),
                               skipped=len(chunk) - len(messages)))
    if partition is not None:
        yield TALLY, (partition, first, last, tally)


def _serialised(kind: int, order: tuple[int, int, int],
                records: Iterable[Record]) -> Iterator[tuple[Any, ...]]:
    for j, record in enumerate(records):
        out = serialise(record)
        yield kind, (*order, j, 0), out.key, out.value


def _bytes(value: bytearray | bytes | None) -> bytes | None:
    return None if value is None else bytes(value)


def fold_windows(processed: RDD[Any], plan: Plan) -> RDD[Any]:
    """Enriched records → one Spark partition per partition of ``content.enriched.v1``, sorted
    into the local replay's order (an external sort), folded by the replay's window code."""
    enriched = processed.filter(lambda row: row[0] == ENRICHED).map(lambda row: row[1])
    grouped = enriched.repartitionAndSortWithinPartitions(
        numPartitions=plan.settings.partitions, partitionFunc=lambda key: key[0])
    return grouped.mapPartitions(partial(fold_partition, plan))


def fold_partition(plan: Plan, items: Iterable[tuple[Any, Any]]) -> Iterator[tuple[Any, ...]]:
    windows = ReplayWindows(plan, {})
    where: int | None = None
    for key, (group, value) in items:
        where = key[0]
        for w, record in enumerate(windows.fold(group, value, where)):
            out = serialise(record)
            yield WINDOWS, (*key[1:], w), out.key, out.value
    if where is not None:
        for w, record in enumerate(windows.flush()):
            out = serialise(record)
            yield WINDOWS, (FLUSHED, where, 0, 0, w), out.key, out.value
