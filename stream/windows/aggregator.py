"""Event-time windows over enriched records: assignment, folding and closing, as plain code.

A window is ``[start, end)`` in event time (epoch ms); which windows a record falls into is its
`stream.windows.kinds.WindowKind`'s business (tumbling, hopping).

**Watermarks.** Each partition of the aggregated topic (``content.enriched.v1``: all windows of a
group live on one) has a watermark derived per *source* partition (the ``content.events.v1``
partition in the record's ``source``): the largest event time seen from each source, and the
watermark is the minimum of those over the sources that are *active*. A source is idle once it
sent nothing here for `idle_ms` of processing time (`clock`, injected), counted from when this
aggregator started serving the partition for sources it has not heard from since; idle sources
do not hold the watermark back (Flink's idleness). So a source partition paused by a rebalance
does not see its records declared late by the others' progress, unless it stays silent longer
than `idle_ms`. Once *every* source is idle, the watermark is the largest event time over them
all (Flink's valve flushes the maximum when its last input goes idle), and `tick` advances it
without a record, so the windows of a stream that went quiet close on time, not at the next
record (the worker calls it from a timer). The watermark never goes back (a source that resumes
behind it has late records). A window closes when ``watermark >= end + grace``.

**Effectively once.** Every stored window remembers, per source partition, the highest source
offset it folded (``source_offsets``, in the same changelogged value as the counts), and every
partition state, per source, the highest offset it processed and which of the `SPAN` offsets
below it (`stream.windows.seen`): a record re-sent by the enrich stage after a crash (same
source, new offset of the aggregated topic), or re-read after the table was recovered from its
changelog, is skipped instead of counted twice, and one that arrives after later records of
its source (a hole in one worker's delivery, re-enriched by the next owner) is still counted.
Limits: a record more than `SPAN` offsets below its source's highest counts as seen, and a
crash that loses the partition state of a batch that filled such holes, while its folds were
written, counts those records twice.

A record older than the watermark for some window is *late*: counted (`late_records`),
reported in `Step.late` and folded into the windows it can still join; a window that closed is
never reopened (the watermark that closed it is in the partition state).

**Emitting at least once.** `prepare` folds a record and says which windows close; the caller
sends them, makes sure they are on the broker, then calls `settle`, which writes the partition
state and deletes the closed windows. A crash in between leaves the windows in the table, and
the next record after recovery emits them again, byte-identical (the bookkeeping is not part of
the emitted record), so consumers deduplicate on the window key. `update` does both at once
(replay and tests, whose store is a dict). The worker folds whole batches, `prepare` and
`settle` per record, into a store that writes the batch's open windows at once and holds the
partition states and the closed windows' removal back until the closed windows are on the
broker (`stream.worker.windowing.BatchWrites`): the same order, per batch.

`WindowAggregator` keeps its state in any ``MutableMapping[str, dict]``: the live worker passes a
Faust table behind `BatchWrites` (so state is changelogged and recovered), replay and tests pass
a dict. What a window
holds is a `Folder`: `SIGNAL_FOLDER` (counts, labels, mean scores, flags) by default;
`stream.models.shadow` folds champion/challenger comparisons with the same machinery.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from stream.windows.kinds import WindowKind
from stream.windows.seen import classify, marked

WATERMARK_PREFIX = "__watermark__|"   # + partition: that partition's state (watermark, sources)
OFFSETS = "source_offsets"   # in a stored window: source partition → highest offset folded
NO_SOURCE = "-"              # records without a source position (shadow records): not deduplicated


def window_key(spec: WindowKind, group: str, start_ms: int) -> str:
    return f"{spec.name}|{group}|{start_ms}"


def window_header(spec: WindowKind, group: str, start_ms: int, partition: int) -> dict[str, Any]:
    """The fields every aggregate has, whatever it folds: its window, group and partition."""
    return {"window": {"kind": spec.kind, "name": spec.name, "start_ms": start_ms,
                       "end_ms": spec.end(start_ms)},
            "group": group, "partition": partition}


def new_aggregate(spec: WindowKind, group: str, start_ms: int, partition: int) -> dict[str, Any]:
    return {**window_header(spec, group, start_ms, partition), "count": 0,
            "first_event_ms": None, "last_event_ms": None,
            "event_types": {}, "labels": {}, "score_sums": {}, "flags": {}}


def fold(aggregate: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """A new aggregate with one enriched record added (the input is not modified)."""
    agg = {**aggregate, "event_types": dict(aggregate["event_types"]),
           "labels": {t: dict(c) for t, c in aggregate["labels"].items()},
           "score_sums": dict(aggregate["score_sums"]), "flags": dict(aggregate["flags"])}
    ts = record["event_time_ms"]
    agg["count"] += 1
    agg["first_event_ms"] = ts if agg["first_event_ms"] is None else min(agg["first_event_ms"], ts)
    agg["last_event_ms"] = ts if agg["last_event_ms"] is None else max(agg["last_event_ms"], ts)
    _bump(agg["event_types"], record["event_type"])
    for task, signal in record.get("signals", {}).items():
        _bump(agg["labels"].setdefault(task, {}), signal["label"])
        agg["score_sums"][task] = agg["score_sums"].get(task, 0.0) + float(signal["score"])
    for flag in record.get("flags", ()):
        _bump(agg["flags"], flag)
    return agg


def _bump(counter: dict[str, int], key: str) -> None:
    counter[key] = counter.get(key, 0) + 1


def window_record(aggregate: dict[str, Any]) -> dict[str, Any]:
    """The ``signals.windows.v1`` value for a closed window: counts, mean scores, flag rates."""
    count = aggregate["count"]
    return {
        "window": aggregate["window"], "group": aggregate["group"], "count": count,
        "first_event_ms": aggregate["first_event_ms"], "last_event_ms": aggregate["last_event_ms"],
        "event_types": aggregate["event_types"], "labels": aggregate["labels"],
        "mean_scores": mean_scores(aggregate),
        "flag_counts": aggregate["flags"],
        "flag_rates": {f: n / count for f, n in aggregate["flags"].items()} if count else {},
    }


def mean_scores(aggregate: dict[str, Any]) -> dict[str, float]:
    """Each task's mean score over the records that task scored (its label counts), not over the
    window's count: a head that applies to some content types only would be diluted."""
    return {task: total / sum(aggregate["labels"][task].values())
            for task, total in aggregate["score_sums"].items()}


@dataclass(frozen=True, slots=True)
class Folder:
    """What a window aggregates: a new aggregate, folding one record in, the emitted record."""

    empty: Callable[[WindowKind, str, int, int], dict[str, Any]]
    fold: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]
    emit: Callable[[dict[str, Any]], dict[str, Any]]


SIGNAL_FOLDER = Folder(empty=new_aggregate, fold=fold, emit=window_record)


def late_record(group: str, partition: int, watermark_ms: int, grace_ms: int,
                missed: list[dict[str, Any]], record: dict[str, Any]) -> dict[str, Any]:
    """The ``signals.late.v1`` value: a record that came too late for some of its windows."""
    return {"group": group, "partition": partition, "watermark_ms": watermark_ms,
            "grace_ms": grace_ms, "missed": missed, "record": record}


@dataclass(slots=True)
class Step:
    """What one record did: the windows it closed, its late report, and what `settle` writes."""

    partition: int
    closed: list[dict[str, Any]] = field(default_factory=list)
    late: dict[str, Any] | None = None
    duplicate: bool = False
    state: dict[str, Any] | None = None
    closed_keys: list[str] = field(default_factory=list)


@dataclass
class WindowAggregator:
    """Folds enriched records into windows held in `store`; returns windows as they close.

    `sources` are the source partitions expected from the start (the worker's content.events.v1
    partitions): until each has sent something, or gone idle, the watermark waits for it.
    `idle_ms` None means a source is never idle (replay: its output must not depend on speed).
    """

    store: MutableMapping[str, Any]
    specs: tuple[WindowKind, ...]
    grace_ms: int
    folder: Folder = SIGNAL_FOLDER
    sources: tuple[int, ...] = ()
    idle_ms: int | None = None
    clock: Callable[[], float] = time.monotonic   # seconds, processing time
    late_records: int = 0
    duplicates: int = 0
    _open: dict[int, list[tuple[int, str]]] = field(default_factory=dict)
    _indexed: bool = False
    _seen: dict[int, dict[str, float]] = field(default_factory=dict)
    _since: dict[int, float] = field(default_factory=dict)

    def invalidate_index(self) -> None:
        """Call after the store changed under us (Faust recovery, a rebalance)."""
        self._indexed = False

    def update(self, group: str, record: dict[str, Any], partition: int) -> list[dict[str, Any]]:
        """Fold `record` into its open windows; advance the watermark; return closed windows."""
        step = self.prepare(group, record, partition)
        self.settle(step)
        return step.closed

    def prepare(self, group: str, record: dict[str, Any], partition: int) -> Step:
        """Fold `record` into its windows; the closed windows stay stored until `settle`."""
        self._ensure_index()
        now = self.clock()
        seen = self._seen.setdefault(partition, {})
        self._since.setdefault(partition, now)
        state = self.partition_state(partition)
        source, offset = record_source(record)
        known = state["sources"].get(source)
        seen[source] = now
        where = "new" if offset is None else classify(known, offset)
        if where == "seen":
            self.duplicates += 1
            return self._closing(Step(partition, duplicate=True), _due(state["watermark"]))
        ts = int(record["event_time_ms"])
        watermark = state["watermark"]
        missed: list[dict[str, Any]] = []
        for spec in self.specs:
            for start in spec.starts(ts):
                if watermark is not None and spec.end(start) + self.grace_ms <= watermark:
                    missed.append(window_header(spec, group, start, partition)["window"])
                    continue
                self._fold_into(spec, group, start, record, partition, source, offset,
                                in_order=where == "new")
        step = Step(partition)
        if missed and watermark is not None:
            self.late_records += 1
            step.late = late_record(group, partition, watermark, self.grace_ms, missed, record)
        event_ms = ts if known is None else max(int(known["event_ms"]), ts)
        entry: dict[str, Any] = {"offset": offset, "event_ms": event_ms}
        if offset is not None:
            entry["offset"], entry["seen"] = marked(known, offset)
        state["sources"][source] = entry
        candidate = self._candidate(partition, state, now)
        if candidate is not None and (watermark is None or candidate > watermark):
            state["watermark"] = candidate
        step.state = state
        return self._closing(step, _due(state["watermark"]))

    def tick(self, partition: int) -> Step:
        """Advance `partition`'s watermark by idleness alone (no record; a no-op without
        `idle_ms`): the windows it closes, and the state to write, as `prepare` returns them.
        A partition with state that this aggregator has not served yet (recovered, taken over)
        starts its idle time here; one with none (nothing heard, nothing open) does not."""
        self._ensure_index()
        state = self.partition_state(partition)
        step = Step(partition)
        if self.idle_ms is None or not (state["sources"] or self._open.get(partition)):
            return step
        now = self.clock()
        self._seen.setdefault(partition, {})
        self._since.setdefault(partition, now)
        candidate = self._candidate(partition, state, now)
        if candidate is not None and (state["watermark"] is None or candidate > state["watermark"]):
            state["watermark"] = candidate
            step.state = state
        return self._closing(step, _due(state["watermark"]))

    def settle(self, step: Step) -> None:
        """Make a prepared step permanent: the partition state, then the closed windows' removal
        (after the caller has sent them, or into a store that holds these writes back until
        then: the worker's `stream.worker.windowing.BatchWrites`)."""
        if step.state is not None:
            self.store[WATERMARK_PREFIX + str(step.partition)] = step.state
        for key in step.closed_keys:
            self.store.pop(key, None)

    def watermark(self, partition: int) -> int | None:
        mark = self.partition_state(partition)["watermark"]
        return None if mark is None else int(mark)

    def partition_state(self, partition: int) -> dict[str, Any]:
        """A copy of the stored ``{"watermark", "sources": {source: {"offset", "event_ms"}}}``."""
        value = self.store.get(WATERMARK_PREFIX + str(partition))
        if value is None or isinstance(value, int):    # an int: a watermark stored before sources
            return {"watermark": value, "sources": {}}
        return {"watermark": value["watermark"],
                "sources": {k: dict(v) for k, v in value["sources"].items()}}

    def flush(self) -> list[dict[str, Any]]:
        """Close every open window (end of a finite input such as a replay file)."""
        self._ensure_index()
        closed: list[dict[str, Any]] = []
        for partition in sorted(self._open):
            step = self._closing(Step(partition), ALL)
            self.settle(step)
            closed += step.closed
        return closed

    def _candidate(self, partition: int, state: dict[str, Any], now: float) -> int | None:
        """The minimum event time over the active sources; None while an active one is unheard;
        the maximum over all heard sources when every source is idle."""
        seen, since = self._seen[partition], self._since[partition]
        marks: list[int] = []
        for source in sorted(set(state["sources"]) | {str(p) for p in self.sources}):
            if self.idle_ms is not None and (now - seen.get(source, since)) * 1000 >= self.idle_ms:
                continue
            known = state["sources"].get(source)
            if known is None:
                return None
            marks.append(int(known["event_ms"]))
        if marks:
            return min(marks)
        heard = [int(known["event_ms"]) for known in state["sources"].values()]
        return max(heard) if heard else None

    def _fold_into(self, spec: WindowKind, group: str, start: int, record: dict[str, Any],
                   partition: int, source: str, offset: int | None, in_order: bool) -> None:
        """Fold `record` into one window. A record past the partition state's highest offset
        of its source (`in_order`) is checked against the window's own highest too: the
        partition state of the last batch before a crash can be lost while its folds were
        written (`BatchWrites` writes the open windows first). A record filling a hole below
        the highest (`stream.windows.seen`) is not: the window's highest says nothing about
        the offsets below it."""
        key = window_key(spec, group, start)
        current = self.store.get(key)
        if current is None:
            current = self.folder.empty(spec, group, start, partition)
            heapq.heappush(self._open.setdefault(partition, []), (spec.end(start), key))
        offsets: dict[str, int] = dict(current.get(OFFSETS, {}))
        if in_order and offset is not None and offsets.get(source, -1) >= offset:
            return            # folded before the crash; only the partition state was lost
        folded = self.folder.fold(current, record)
        if offset is not None:
            offsets[source] = max(offsets.get(source, offset), offset)
            folded[OFFSETS] = offsets
        self.store[key] = folded

    def _closing(self, step: Step, end_ms: int) -> Step:
        """Add to `step` every window of its partition that ends at or before `end_ms` + grace."""
        heap = self._open.get(step.partition, [])
        while heap and heap[0][0] + self.grace_ms <= end_ms:
            _, key = heapq.heappop(heap)
            aggregate = self.store.get(key)
            if aggregate is not None:
                step.closed.append(self.folder.emit(
                    {k: v for k, v in aggregate.items() if k != OFFSETS}))
                step.closed_keys.append(key)
        return step

    def _ensure_index(self) -> None:
        if self._indexed:
            return
        self._open = {}
        self._seen = {}      # a recovered partition: every source gets a fresh idle period
        self._since = {}
        for key, aggregate in _window_items(self.store.items()):
            end = aggregate["window"]["end_ms"]
            heapq.heappush(self._open.setdefault(aggregate["partition"], []), (end, key))
        self._indexed = True


ALL = 2**63   # an end beyond every window: `flush`
NOTHING = -(2**63)


def _due(watermark: int | None) -> int:
    return NOTHING if watermark is None else watermark


def record_source(record: dict[str, Any]) -> tuple[str, int | None]:
    """The record's source partition (as a key) and offset; `NO_SOURCE` when it has none."""
    source = record.get("source")
    if not isinstance(source, dict):
        return NO_SOURCE, None
    return str(source["partition"]), int(source["offset"])


def _window_items(items: Iterable[tuple[str, Any]]) -> Iterable[tuple[str, dict[str, Any]]]:
    return ((k, v) for k, v in items if not k.startswith(WATERMARK_PREFIX))
