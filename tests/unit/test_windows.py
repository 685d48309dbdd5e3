"""Window assignment, folding and closing, checked against a brute-force model of the same rules."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.windows.aggregator import (
    WATERMARK_PREFIX,
    WindowAggregator,
    fold,
    new_aggregate,
    window_record,
)
from stream.windows.kinds import HoppingWindow, TumblingWindow

TUMBLING = TumblingWindow(60_000)
HOPPING = HoppingWindow(300_000, 60_000)


def record(ts: int, label: str = "news", score: float = 0.5,
           flags: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"event_time_ms": ts, "event_type": "content.published",
            "signals": {"topic": {"label": label, "score": score, "model": "t1"}},
            "flags": list(flags)}


@given(st.integers(min_value=-10**12, max_value=10**12))
def test_every_timestamp_is_in_exactly_size_over_step_windows(ts: int) -> None:
    for spec in (HOPPING, HoppingWindow(10_000, 2_500)):
        starts = spec.starts(ts)
        assert len(starts) == spec.size_ms // spec.step_ms
        assert all(s <= ts < spec.end(s) and s % spec.step_ms == 0 for s in starts)
    [start] = TUMBLING.starts(ts)
    assert start <= ts < TUMBLING.end(start) and start % TUMBLING.size_ms == 0


def test_spec_names_and_kinds() -> None:
    assert (TUMBLING.name, TUMBLING.kind) == ("tumbling_60s", "tumbling")
    assert (HOPPING.name, HOPPING.kind) == ("hopping_300s_60s", "hopping")
    with pytest.raises(ValueError, match="multiple"):
        HoppingWindow(300_000, 70_000)


def test_fold_counts_labels_scores_and_flags_without_mutating() -> None:
    empty = new_aggregate(TUMBLING, "g", 0, partition=0)
    one = fold(empty, record(1, "news", 0.25, ("safety",)))
    two = fold(one, record(2, "sports", 0.75))
    assert empty["count"] == 0 and one["count"] == 1
    assert two["labels"] == {"topic": {"news": 1, "sports": 1}}
    assert two["score_sums"] == {"topic": 1.0}
    assert two["flags"] == {"safety": 1}
    assert (two["first_event_ms"], two["last_event_ms"]) == (1, 2)


def test_a_mean_score_is_over_the_records_its_task_scored() -> None:
    comment = {"event_time_ms": 3, "event_type": "comment.created", "flags": [],
               "signals": {"sentiment": {"label": "positive", "score": 0.9, "model": "m"}}}
    agg = fold(fold(fold(new_aggregate(TUMBLING, "g", 0, partition=0), record(1, "news", 0.2)),
                    record(2, "news", 0.4)), comment)
    closed = window_record(agg)
    assert closed["count"] == 3
    assert closed["mean_scores"] == pytest.approx({"topic": 0.3, "sentiment": 0.9})


def test_windows_close_when_stream_time_passes_end_plus_grace() -> None:
    agg = WindowAggregator({}, (TUMBLING,), grace_ms=5_000)
    assert agg.update("g", record(1_000), 0) == []
    assert agg.update("g", record(64_000), 0) == []          # 60 s + 5 s grace not reached
    closed = agg.update("g", record(65_000), 0)
    assert [(w["window"]["start_ms"], w["count"]) for w in closed] == [(0, 1)]
    assert closed[0]["mean_scores"] == {"topic": 0.5}


def test_a_late_record_is_not_folded_into_a_closed_window() -> None:
    agg = WindowAggregator({}, (TUMBLING,), grace_ms=0)
    agg.update("g", record(1_000), 0)
    agg.update("g", record(70_000), 0)                        # closes [0, 60s)
    assert agg.update("g", record(2_000), 0) == []            # late for [0, 60s): dropped
    assert agg.late_records == 1
    assert [w["count"] for w in agg.flush()] == [1]           # only [60s, 120s) remains


def test_partitions_have_their_own_stream_time() -> None:
    agg = WindowAggregator({}, (TUMBLING,), grace_ms=0)
    agg.update("a", record(1_000), partition=0)
    assert agg.update("b", record(500_000), partition=1) == []   # partition 0's window stays open
    assert [w["group"] for w in agg.update("a", record(61_000), partition=0)] == ["a"]


def test_state_survives_a_new_aggregator_on_the_same_store() -> None:
    store: dict[str, Any] = {}
    first = WindowAggregator(store, (TUMBLING,), grace_ms=0)
    first.update("g", record(1_000), 0)
    restarted = WindowAggregator(store, (TUMBLING,), grace_ms=0)   # e.g. after Faust recovery
    closed = restarted.update("g", record(61_000), 0)
    assert [(w["window"]["start_ms"], w["count"]) for w in closed] == [(0, 1)]


# Kafka keys the enriched topic by group, so a group always lives on one partition.
PARTITION_OF = {"a": 0, "b": 1, "c": 1, "d": 2}
events = st.lists(
    st.tuples(st.integers(min_value=0, max_value=1_200_000), st.sampled_from(sorted(PARTITION_OF))),
    max_size=120)


@settings(max_examples=150, deadline=None)
@given(events, st.integers(min_value=0, max_value=120_000))
def test_closed_plus_flushed_windows_match_a_brute_force_count(
    items: list[tuple[int, str]], grace: int
) -> None:
    store: dict[str, Any] = {}
    agg = WindowAggregator(store, (TUMBLING, HOPPING), grace_ms=grace)
    emitted = [w for ts, g in items for w in agg.update(g, record(ts), PARTITION_OF[g])]
    emitted += agg.flush()
    expected: Counter[tuple[str, str, int]] = Counter()
    watermark: dict[int, int] = {}
    for ts, group in items:                 # the documented rule, written out plainly
        partition = PARTITION_OF[group]
        for spec in (TUMBLING, HOPPING):
            for start in spec.starts(ts):
                mark = watermark.get(partition)
                if mark is None or spec.end(start) + grace > mark:
                    expected[(spec.name, group, start)] += 1
        watermark[partition] = max(watermark.get(partition, ts), ts)
    got = Counter({(w["window"]["name"], w["group"], w["window"]["start_ms"]): w["count"]
                   for w in emitted})
    assert got == expected
    assert len(emitted) == len(expected)               # each window emitted once
    assert all(k.startswith(WATERMARK_PREFIX) for k in store)   # nothing left open


# --- per-source watermarks, idleness, effectively-once folds -------------------------------------

def sourced(ts: int, source: int, offset: int, label: str = "news") -> dict[str, Any]:
    return {**record(ts, label), "source": {"topic": "content.events.v1", "partition": source,
                                            "offset": offset}}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def counts(windows: list[dict[str, Any]]) -> list[tuple[str, int, int]]:
    return sorted((w["window"]["name"], w["window"]["start_ms"], w["count"]) for w in windows)


def test_the_watermark_is_the_minimum_over_the_source_partitions() -> None:
    agg = WindowAggregator({}, (TUMBLING,), grace_ms=0)
    agg.update("g", sourced(1_000, 0, 0), 0)
    agg.update("g", sourced(2_000, 1, 0), 0)
    assert agg.update("g", sourced(500_000, 0, 1), 0) == []   # source 1 is still at 2 s
    assert agg.watermark(0) == 2_000
    assert agg.update("g", sourced(3_000, 1, 1), 0) == []     # not late: source 1 is behind
    closed = agg.update("g", sourced(61_000, 1, 2), 0)
    assert counts(closed) == [("tumbling_60s", 0, 3)] and agg.late_records == 0


def test_an_expected_source_holds_the_watermark_until_it_goes_idle() -> None:
    clock = FakeClock()
    agg = WindowAggregator({}, (TUMBLING,), grace_ms=0, sources=(0, 1), idle_ms=10_000,
                           clock=clock)
    agg.update("g", sourced(1_000, 0, 0), 0)
    clock.now += 9
    assert agg.update("g", sourced(200_000, 0, 1), 0) == []   # source 1 never spoke: wait
    assert agg.watermark(0) is None
    clock.now += 1                                            # 10 s: source 1 is idle
    closed = agg.update("g", sourced(201_000, 0, 2), 0)
    assert counts(closed) == [("tumbling_60s", 0, 1)] and agg.watermark(0) == 201_000
    # source 1 wakes up behind the watermark: its record is late, counted, and reported
    step = agg.prepare("g", sourced(5_000, 1, 0), 0)
    assert agg.late_records == 1 and step.late is not None
    assert step.late["watermark_ms"] == 201_000 and step.late["missed"][0]["start_ms"] == 0
    agg.settle(step)
    assert agg.watermark(0) == 201_000                        # never goes back
    # ... and now it is active again: it holds the watermark where it is
    assert agg.update("g", sourced(400_000, 0, 3), 0) == []
    assert agg.watermark(0) == 201_000


def test_a_source_paused_by_a_rebalance_is_not_declared_late_within_the_idle_time() -> None:
    clock = FakeClock()
    store: dict[str, Any] = {}
    agg = WindowAggregator(store, (TUMBLING,), grace_ms=0, sources=(0, 1), idle_ms=30_000,
                           clock=clock)
    agg.update("g", sourced(1_000, 0, 0), 0)
    agg.update("g", sourced(1_500, 1, 0), 0)
    clock.now += 25                                           # source 1 paused for 25 s ...
    for i in range(1, 5):
        assert agg.update("g", sourced(i * 60_000, 0, i), 0) == []
    agg.invalidate_index()                                    # ... a rebalance, recovery ...
    clock.now += 25                                           # ... 50 s in all since source 1
    assert agg.update("g", sourced(300_000, 0, 5), 0) == []   # the recovery restarted its wait
    assert agg.update("g", sourced(2_000, 1, 1), 0) == []     # source 1 is back: not late
    assert agg.late_records == 0
    closed = agg.update("g", sourced(70_000, 1, 2), 0)
    assert counts(closed) == [("tumbling_60s", 0, 3)]


def test_a_window_emitted_before_a_crash_is_not_reopened_by_the_replay() -> None:
    store: dict[str, Any] = {}
    agg = WindowAggregator(store, (TUMBLING,), grace_ms=0)
    inputs = [sourced(1_000, 0, 0), sourced(30_000, 0, 1), sourced(61_000, 0, 2)]
    emitted = [w for r in inputs for w in agg.update("g", r, 0)]
    recovered = WindowAggregator(json_copy(store), (TUMBLING,), grace_ms=0)
    again = [w for r in inputs for w in recovered.update("g", r, 0)]   # re-read from offset 0
    assert counts(emitted) == [("tumbling_60s", 0, 2)] and again == []
    assert recovered.late_records == 0 and recovered.duplicates == 3


def test_a_window_closed_but_not_settled_is_emitted_again_byte_identical() -> None:
    store: dict[str, Any] = {}
    agg = WindowAggregator(store, (TUMBLING, HOPPING), grace_ms=0)
    for i, ts in enumerate((1_000, 2_000, 59_000)):
        agg.update("g", sourced(ts, 0, i), 0)
    step = agg.prepare("g", sourced(400_000, 0, 3), 0)      # closes windows; crash before settle
    assert step.closed
    recovered = WindowAggregator(json_copy(store), (TUMBLING, HOPPING), grace_ms=0)
    replayed = recovered.prepare("g", sourced(400_000, 0, 3), 0)
    assert [orjson.dumps(w) for w in replayed.closed] == [orjson.dumps(w) for w in step.closed]


def json_copy(store: dict[str, Any]) -> dict[str, Any]:
    """What a Faust table recovers from its JSON changelog."""
    return {k: json.loads(json.dumps(v)) for k, v in store.items()}


class LoggedStore(dict[str, Any]):
    """A dict that keeps its changelog: every write, JSON-serialised like the Faust table's."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[str, str | None]] = []

    def __setitem__(self, key: str, value: Any) -> None:
        self.log.append((key, json.dumps(value)))
        super().__setitem__(key, json.loads(json.dumps(value)))

    def pop(self, key: str, default: Any = None) -> Any:   # type: ignore[override]
        self.log.append((key, None))
        return super().pop(key, default)

    @classmethod
    def recovered(cls, log: list[tuple[str, str | None]]) -> LoggedStore:
        store = cls()
        for key, value in log:
            if value is None:
                store.pop(key)
            else:
                store[key] = json.loads(value)
        return store


def brute_force(items: list[tuple[int, str, int]], grace: int) -> Counter[tuple[str, str, int]]:
    """The documented rule, written out plainly: per partition, the watermark is the largest
    minimum so far over the sources seen of the largest event time of each; a record counts in
    each of its windows that has not reached end + grace of the watermark before it."""
    expected: Counter[tuple[str, str, int]] = Counter()
    latest: dict[int, dict[int, int]] = {}
    watermark: dict[int, int] = {}
    for ts, group, source in items:
        partition = PARTITION_OF[group]
        for spec in (TUMBLING, HOPPING):
            for start in spec.starts(ts):
                mark = watermark.get(partition)
                if mark is None or spec.end(start) + grace > mark:
                    expected[(spec.name, group, start)] += 1
        seen = latest.setdefault(partition, {})
        seen[source] = max(seen.get(source, ts), ts)
        watermark[partition] = max(watermark.get(partition, min(seen.values())),
                                   min(seen.values()))
    return expected


sourced_events = st.lists(
    st.tuples(st.integers(min_value=0, max_value=1_200_000), st.sampled_from(sorted(PARTITION_OF)),
              st.integers(min_value=0, max_value=3)),
    max_size=80)


@settings(max_examples=150, deadline=None)
@given(sourced_events, st.integers(min_value=0, max_value=120_000), st.data())
def test_crashes_replays_and_re_sends_never_change_the_counts(
    items: list[tuple[int, str, int]], grace: int, data: st.DataObject
) -> None:
    """Any number of crashes (the table recovered from any prefix of its changelog, the input
    re-read from a position committed after that prefix was written) and re-sends (a source's
    records sent again, as the enrich stage does after its own crash): the windows emitted,
    deduplicated by key, are exactly the brute-force count of the input, and a window emitted
    twice is emitted byte-identically."""
    next_offset: dict[int, int] = {}
    inputs: list[tuple[str, dict[str, Any]]] = []     # the input, offsets per source in order
    for ts, group, source in items:
        offset = next_offset.get(source, 0)
        next_offset[source] = offset + 1
        inputs.append((group, sourced(ts, source, offset)))
    store = LoggedStore()
    agg = WindowAggregator(store, (TUMBLING, HOPPING), grace_ms=grace)
    emitted: dict[tuple[str, str, int], bytes] = {}

    def emit(windows: list[dict[str, Any]]) -> None:
        for w in windows:
            key = (w["window"]["name"], w["group"], w["window"]["start_ms"])
            assert emitted.setdefault(key, orjson.dumps(w)) == orjson.dumps(w)

    done: list[int] = []          # changelog length once each input record was settled
    position = 0
    crashes = 0
    while position < len(inputs):
        group, rec = inputs[position]
        step = agg.prepare(group, rec, PARTITION_OF[group])
        emit(step.closed)         # sent and flushed before the table forgets them
        agg.settle(step)
        done = [*done[:position], len(store.log)]
        position += 1
        if data.draw(st.integers(0, 9)) == 0:      # the enrich stage re-sends a few records
            for g, r in data.draw(st.lists(st.sampled_from(inputs[:position]), max_size=4)):
                step = agg.prepare(g, r, PARTITION_OF[g])
                assert step.duplicate and step.late is None     # not mistaken for a late one
                emit(step.closed)
                agg.settle(step)
        if crashes < 3 and data.draw(st.integers(0, 7)) == 0:   # the worker dies
            crashes += 1
            kept = data.draw(st.integers(0, len(store.log)))
            committed = data.draw(st.integers(0, sum(1 for end in done if end <= kept)))
            store = LoggedStore.recovered(store.log[:kept])
            agg = WindowAggregator(store, (TUMBLING, HOPPING), grace_ms=grace)
            position = committed
    emit(agg.flush())
    expected = brute_force(items, grace)
    got = Counter({k: orjson.loads(v)["count"] for k, v in emitted.items()})
    assert got == expected
