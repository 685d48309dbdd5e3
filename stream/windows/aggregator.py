"""Event-time windows over enriched records: assignment, folding and closing, as plain code.

A window is ``[start, end)`` in event time (epoch ms); which windows a record falls into is its
`stream.windows.kinds.WindowKind`'s business (tumbling, hopping).
Stream time is tracked per input partition as the largest event time seen (the watermark). A window
closes when ``watermark >= end + grace``: its aggregate is emitted once and removed from the store.
A record older than that for some window is *late* for it and is counted in the windows it can
still join; a window that already closed is never reopened.

`WindowAggregator` keeps its state in any ``MutableMapping[str, dict]``: the live worker passes a
Faust table (so state is changelogged and recovered), replay and tests pass a dict. What a window
holds is a `Folder`: `SIGNAL_FOLDER` (counts, labels, mean scores, flags) by default;
`stream.models.shadow` folds champion/challenger comparisons with the same machinery.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from stream.windows.kinds import WindowKind

WATERMARK_PREFIX = "__watermark__|"


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


@dataclass
class WindowAggregator:
    """Folds enriched records into windows held in `store`; returns windows as they close."""

    store: MutableMapping[str, Any]
    specs: tuple[WindowKind, ...]
    grace_ms: int
    folder: Folder = SIGNAL_FOLDER
    _open: dict[int, list[tuple[int, str]]] = field(default_factory=dict)
    _indexed: bool = False
    late_records: int = 0

    def invalidate_index(self) -> None:
        """Call after the store changed under us (Faust recovery, a rebalance)."""
        self._indexed = False

    def update(self, group: str, record: dict[str, Any], partition: int) -> list[dict[str, Any]]:
        """Fold `record` into its open windows; advance the watermark; return closed windows."""
        self._ensure_index()
        ts = int(record["event_time_ms"])
        watermark = self.watermark(partition)
        for spec in self.specs:
            for start in spec.starts(ts):
                if watermark is not None and spec.end(start) + self.grace_ms <= watermark:
                    self.late_records += 1
                    continue
                self._fold_into(spec, group, start, record, partition)
        if watermark is None or ts > watermark:
            self.store[WATERMARK_PREFIX + str(partition)] = ts
            watermark = ts
        return self._close(partition, watermark - self.grace_ms)

    def watermark(self, partition: int) -> int | None:
        value = self.store.get(WATERMARK_PREFIX + str(partition))
        return None if value is None else int(value)

    def flush(self) -> list[dict[str, Any]]:
        """Close every open window (end of a finite input such as a replay file)."""
        self._ensure_index()
        closed: list[dict[str, Any]] = []
        for partition in sorted(self._open):
            closed += self._close(partition, None)
        return closed

    def _fold_into(self, spec: WindowKind, group: str, start: int, record: dict[str, Any],
                   partition: int) -> None:
        key = window_key(spec, group, start)
        current = self.store.get(key)
        if current is None:
            current = self.folder.empty(spec, group, start, partition)
            heapq.heappush(self._open.setdefault(partition, []), (spec.end(start), key))
        self.store[key] = self.folder.fold(current, record)

    def _close(self, partition: int, up_to_ms: int | None) -> list[dict[str, Any]]:
        heap = self._open.get(partition, [])
        closed: list[dict[str, Any]] = []
        while heap and (up_to_ms is None or heap[0][0] <= up_to_ms):
            _, key = heapq.heappop(heap)
            aggregate = self.store.pop(key, None)
            if aggregate is not None:
                closed.append(self.folder.emit(aggregate))
        return closed

    def _ensure_index(self) -> None:
        if self._indexed:
            return
        self._open = {}
        for key, aggregate in _window_items(self.store.items()):
            end = aggregate["window"]["end_ms"]
            heapq.heappush(self._open.setdefault(aggregate["partition"], []), (end, key))
        self._indexed = True


def _window_items(items: Iterable[tuple[str, Any]]) -> Iterable[tuple[str, dict[str, Any]]]:
    return ((k, v) for k, v in items if not k.startswith(WATERMARK_PREFIX))
