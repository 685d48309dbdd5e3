"""What the window agents do with the aggregator, and the timer that closes idle windows.

* `fold_batch`: one micro-batch of records (the agents ``aggregate``, ``model_eval``,
  ``campaigns``; ``SIGNALS_WINDOW_BATCH_MAX_SIZE``): fold each in order and write the windows
  that stay open, send what closed (and the late reports), make that durable, and only then
  write the partition states and remove the closed windows (`BatchWrites`).
* `close_idle`: the worker's timer. A watermark moves when a record arrives; once every source of
  a partition is idle it can move without one (`WindowAggregator.tick`), so the windows of a
  quiet stream close an idle time after its last record, not at the next one. Only partitions
  this worker serves are ticked, and none while a rebalance or a recovery is in progress (the
  table may be another worker's, or not recovered yet).

A window stage's aggregator reads and writes its Faust table through `BatchWrites`: a batch's
writes wait in memory and reach the table's data and its changelog once per key, in two steps
that keep the order a per-record fold had. The folded windows that stay open are written right
after the folds, before any await (`commit_folds`); the partition states and the closed windows'
removal only after the closed windows are on the broker (`commit`). A crash in between leaves
windows whose folds remember their source offsets (so the batch, whose offsets are not committed
yet, folds again without counting twice) and closed windows still stored, emitted again
byte-identical. Writing the counts before any await matters: when a batch's folds too waited
for the flush, the scale-out test lost counts in 2 of 8 runs (likely a rebalance in the flush,
the new owner's writes, then the old owner's late ones; not proven). One changelog record per key
and batch instead of one per record and window (7 per enriched record with the default window
kinds: 6 windows and the partition state). Faust writes a changelog to the partition of the event
being processed; a batch spans partitions and the timer has no event, so `BatchWrites` names the
partition (`Table.send_changelog`, what a write inside stream iteration does). One lock per
window stage keeps the timer and the agent from interleaving on one aggregator.
"""

from __future__ import annotations

import asyncio
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Iterator,
    MutableMapping,
    Sequence,
)
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import structlog

from stream.core.outputs import WindowRecord
from stream.windows.aggregator import WATERMARK_PREFIX, WindowAggregator
from stream.worker.metrics import WorkerMetrics
from stream.worker.sinks import Sink

log = structlog.get_logger("stream.worker.app")


@dataclass(frozen=True, slots=True)
class WindowOutput:
    """What one window agent does with a closed window: its topic, key field and log event."""

    agent: str
    topic: str
    key: str
    event: str
    logged: tuple[str, ...] = ()
    late_topic: str | None = None
    report_late: bool = False   # log late records (and send them when `late_topic` is set)


@dataclass
class WindowStage:
    """One window agent's aggregator, output, table and source topic, and their lock."""

    aggregator: WindowAggregator
    out: WindowOutput
    writes: BatchWrites        # the Faust table, as `aggregator.store`
    topic: str                 # the aggregated topic: its partitions are the table's
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


async def fold_batch(stage: WindowStage, batch: Sequence[tuple[dict[str, Any], int]],
                     sink: Sink, metrics: WorkerMetrics,
                     durable: Callable[[], Awaitable[None]]) -> None:
    """Fold (record, partition) pairs in order and write the open windows; send what they
    closed and their late reports; make that durable, then write the states and removals."""
    aggregator, out = stage.aggregator, stage.out
    async with stage.lock, committing(stage):
        late_before = aggregator.late_records
        closed: list[dict[str, Any]] = []
        late: list[dict[str, Any]] = []
        for record, partition in batch:
            stage.writes.partition = partition
            step = aggregator.prepare(record[out.key], record, partition)
            aggregator.settle(step)     # into the batch's writes: the table sees it at commit
            closed += step.closed
            if step.late is not None:
                late.append(step.late)
        # no await between the folds and their writes (as a per-record fold wrote the table):
        # a rebalance during the sends below can then only see this batch's states and
        # removals arrive late, never its counts
        stage.writes.commit_folds()
        metrics.observe_windows(out.agent, closed, aggregator.late_records - late_before)
        sent = False
        if out.report_late:
            log_late(late)
            sent = await send_late(sink, out.late_topic, late)
        await emit(stage, closed, sink, durable, sent)


async def emit(stage: WindowStage, closed: Sequence[dict[str, Any]], sink: Sink,
               durable: Callable[[], Awaitable[None]], sent: bool) -> None:
    """Send the closed windows; make them (and a sent late record) durable."""
    out = stage.out
    await send_closed(sink, out.topic, out.key, closed, out.event, *out.logged)
    if sent or closed:
        await durable()


@asynccontextmanager
async def committing(stage: WindowStage) -> AsyncIterator[None]:
    """Commit the stage's pending writes when the block ends normally (a `continue` too); on an
    error drop them and let the aggregator re-read the table (its open windows were the batch's
    view)."""
    try:
        yield
    except BaseException:
        stage.writes.discard()
        stage.aggregator.invalidate_index()
        raise
    stage.writes.commit()


async def close_idle(stages: Sequence[WindowStage], serving: Collection[tuple[str, int]],
                     sink: Sink, metrics: WorkerMetrics,
                     durable: Callable[[], Awaitable[None]]) -> int:
    """Tick every served partition of every stage; what closes is sent, made durable, then
    committed to the table at that partition. Returns how many windows closed."""
    closed = 0
    for stage in stages:
        for partition in sorted(p for topic, p in serving if topic == stage.topic):
            async with stage.lock, committing(stage):
                stage.writes.partition = partition
                step = stage.aggregator.tick(partition)
                if step.state is None and not step.closed:
                    continue
                metrics.observe_windows(stage.out.agent, step.closed, 0)
                stage.aggregator.settle(step)
                await emit(stage, step.closed, sink, durable, False)
                closed += len(step.closed)
                log.info("idle_watermark", agent=stage.out.agent, partition=partition,
                         watermark_ms=(step.state or {}).get("watermark"),
                         closed=len(step.closed))
    return closed


_GONE = object()   # a key the batch deleted


class BatchWrites(MutableMapping[str, Any]):
    """A Faust table as one window stage's aggregator sees it: reads see the table's data and
    the pending writes; writes and deletes wait in `pending`, each with the partition set when
    it was made, until `commit` applies them to the data and the changelog (or `discard`)."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self.partition = 0
        self.pending: dict[str, tuple[int, Any]] = {}

    def __getitem__(self, key: str) -> Any:
        if key in self.pending:
            value = self.pending[key][1]
            if value is _GONE:
                raise KeyError(key)
            return value
        return self.table.data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.pending[key] = (self.partition, value)

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self.pending[key] = (self.partition, _GONE)

    def __iter__(self) -> Iterator[str]:
        data = self.table.data
        yield from (key for key in data if self.pending.get(key, (0, None))[1] is not _GONE)
        yield from (key for key, (_, value) in self.pending.items()
                    if value is not _GONE and key not in data)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def commit_folds(self) -> None:
        """Only the folded windows that stay open, now: the writes a fold made straight into
        the table before any send. The partition states and the closed windows' removal wait
        for `commit`, after the closed windows are on the broker."""
        folds = {key: entry for key, entry in self.pending.items()
                 if entry[1] is not _GONE and not key.startswith(WATERMARK_PREFIX)}
        self.pending = {k: v for k, v in self.pending.items() if k not in folds}
        self._write(folds)

    def commit(self) -> None:
        """Each pending key once into the table's data and its changelog partition."""
        pending, self.pending = self.pending, {}
        self._write(pending)

    def _write(self, pending: dict[str, tuple[int, Any]]) -> None:
        data = self.table.data
        for key, (partition, value) in pending.items():
            if value is _GONE:
                if key in data:
                    self.table.send_changelog(partition, key, None, value_serializer="raw")
                    del data[key]
            else:
                self.table.send_changelog(partition, key, value)
                data[key] = value

    def discard(self) -> None:
        self.pending = {}


async def send_closed(sink: Sink, topic: str, key: str, windows: Sequence[dict[str, Any]],
                      event: str, *logged: str) -> None:
    """Send each closed window keyed by its ``key`` field, and log it (with the `logged` fields)."""
    for window in windows:
        await sink.send(topic, WindowRecord(window, key))
        log.info(event, **{key: window[key]}, window=window["window"]["name"],
                 start_ms=window["window"]["start_ms"], count=window["count"],
                 **{name: window[name] for name in logged})


LATE_SAMPLE = 5   # event ids named in a batch's `late_records` line


def log_late(reports: Sequence[dict[str, Any]]) -> None:
    """One WARNING line for a batch's late records: how many, the first event ids (with their
    event times and sources), the watermark, and the windows they missed (a backlog behind
    its watermark would otherwise log a line per record)."""
    if not reports:
        return
    sample = [report["record"] for report in reports[:LATE_SAMPLE]]
    log.warning("late_records", count=len(reports),
                event_ids=[record.get("event_id") for record in sample],
                event_time_ms=[record.get("event_time_ms") for record in sample],
                sources=[record.get("source") for record in sample],
                groups=sorted({str(report["group"]) for report in reports})[:LATE_SAMPLE],
                watermark_ms=max(int(report["watermark_ms"]) for report in reports),
                missed=sorted({w["name"] for report in reports for w in report["missed"]}))


async def send_late(sink: Sink, topic: str | None, reports: Sequence[dict[str, Any]]) -> bool:
    """Send the late reports when `topic` is set; True when something was sent."""
    if topic is None or not reports:
        return False
    for report in reports:
        await sink.send(topic, WindowRecord(report, "group"))
    return True
