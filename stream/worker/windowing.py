"""What the window agents do with the aggregator, and the timer that closes idle windows.

* `fold_one`: one record (the agents ``aggregate``, ``model_eval``, ``campaigns``): fold, send
  what closed (and the late report), make that durable, and only then let the aggregator forget
  the closed windows (`WindowAggregator.settle`).
* `close_idle`: the worker's timer. A watermark moves when a record arrives; once every source of
  a partition is idle it can move without one (`WindowAggregator.tick`), so the windows of a
  quiet stream close an idle time after its last record, not at the next one. Only partitions
  this worker serves are ticked, and none while a rebalance or a recovery is in progress (the
  table may be another worker's, or not recovered yet).

Faust writes a table's changelog to the partition of the event being processed; the timer has no
event, so `PartitionWriter` writes the table's data and its changelog for the partition it ticks
(`Table.send_changelog`, what a write inside the stream does). One lock per window stage keeps
the timer and the agent from interleaving their prepare/settle steps on one aggregator.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Iterator, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from stream.core.outputs import WindowRecord
from stream.windows.aggregator import Step, WindowAggregator
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
    table: Any                 # the Faust table behind `aggregator.store`
    topic: str                 # the aggregated topic: its partitions are the table's
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


async def fold_one(stage: WindowStage, record: dict[str, Any], partition: int, sink: Sink,
                   metrics: WorkerMetrics, durable: Callable[[], Awaitable[None]]) -> None:
    """Fold one record; send what it closed (and its late report); make that durable on the
    broker, and only then let the aggregator forget the closed windows (`settle`)."""
    aggregator, out = stage.aggregator, stage.out
    async with stage.lock:
        late_before = aggregator.late_records
        step = aggregator.prepare(record[out.key], record, partition)
        metrics.observe_windows(out.agent, step.closed, aggregator.late_records - late_before)
        sent = await send_late(sink, out.late_topic, step.late) if out.report_late else False
        await emit(stage, step, sink, durable, sent)
        aggregator.settle(step)


async def close_idle(stages: Sequence[WindowStage], serving: Collection[tuple[str, int]],
                     sink: Sink, metrics: WorkerMetrics,
                     durable: Callable[[], Awaitable[None]]) -> int:
    """Tick every served partition of every stage; settle through a `PartitionWriter` (outside
    stream iteration). Returns how many windows closed."""
    closed = 0
    for stage in stages:
        for partition in sorted(p for topic, p in serving if topic == stage.topic):
            async with stage.lock:
                step = stage.aggregator.tick(partition)
                if step.state is None and not step.closed:
                    continue
                metrics.observe_windows(stage.out.agent, step.closed, 0)
                await emit(stage, step, sink, durable, False)
                stage.aggregator.settle(step, into=PartitionWriter(stage.table, partition))
                closed += len(step.closed)
                log.info("idle_watermark", agent=stage.out.agent, partition=partition,
                         watermark_ms=(step.state or {}).get("watermark"),
                         closed=len(step.closed))
    return closed


async def emit(stage: WindowStage, step: Step, sink: Sink,
               durable: Callable[[], Awaitable[None]], sent: bool) -> None:
    """Send the step's closed windows; make them (and a sent late record) durable."""
    out = stage.out
    await send_closed(sink, out.topic, out.key, step.closed, out.event, *out.logged)
    if sent or step.closed:
        await durable()


class PartitionWriter(MutableMapping[str, Any]):
    """A Faust table seen from outside stream iteration: reads as the table; writes and deletes
    go to its data and to its changelog at `partition`."""

    def __init__(self, table: Any, partition: int) -> None:
        self.table, self.partition = table, partition

    def __getitem__(self, key: str) -> Any:
        return self.table.data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.table.send_changelog(self.partition, key, value)
        self.table.data[key] = value

    def __delitem__(self, key: str) -> None:
        self.table.send_changelog(self.partition, key, None, value_serializer="raw")
        del self.table.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.table.data)

    def __len__(self) -> int:
        return len(self.table.data)


async def send_closed(sink: Sink, topic: str, key: str, windows: Sequence[dict[str, Any]],
                      event: str, *logged: str) -> None:
    """Send each closed window keyed by its ``key`` field, and log it (with the `logged` fields)."""
    for window in windows:
        await sink.send(topic, WindowRecord(window, key))
        log.info(event, **{key: window[key]}, window=window["window"]["name"],
                 start_ms=window["window"]["start_ms"], count=window["count"],
                 **{name: window[name] for name in logged})


async def send_late(sink: Sink, topic: str | None, late: dict[str, Any] | None) -> bool:
    """Log a late record (and send it when `topic` is set); True when something was sent."""
    if late is None:
        return False
    record = late["record"]
    log.warning("late_record", group=late["group"], event_id=record.get("event_id"),
                event_time_ms=record.get("event_time_ms"), source=record.get("source"),
                watermark_ms=late["watermark_ms"], missed=[w["name"] for w in late["missed"]])
    if topic is None:
        return False
    await sink.send(topic, WindowRecord(late, "group"))
    return True
