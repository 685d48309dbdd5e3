"""Window assignment, folding and closing, checked against a brute-force model of the same rules."""

from __future__ import annotations

from collections import Counter
from typing import Any

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
