"""Idleness without records: `WindowAggregator.tick` (the worker's timer) moves a watermark whose
sources went quiet, as Flink's idleness does, and closes the windows a record would have closed."""

from __future__ import annotations

from typing import Any

from stream.windows.aggregator import WATERMARK_PREFIX, WindowAggregator
from tests.unit.test_windows import TUMBLING, FakeClock, counts, sourced


def quiet_stream(clock: FakeClock, store: dict[str, Any] | None = None) -> WindowAggregator:
    """Sources 0 and 1 (10 s idle time); source 1 behind: the watermark is its 125 s."""
    agg = WindowAggregator({} if store is None else store, (TUMBLING,), grace_ms=0,
                           sources=(0, 1), idle_ms=10_000, clock=clock)
    agg.update("g", sourced(1_000, 0, 0), 0)
    agg.update("g", sourced(2_000, 1, 0), 0)
    agg.update("g", sourced(190_000, 0, 1), 0)
    closed = agg.update("g", sourced(125_000, 1, 1), 0)
    assert counts(closed) == [("tumbling_60s", 0, 2)] and agg.watermark(0) == 125_000
    return agg


def test_a_quiet_stream_closes_its_windows_once_every_source_is_idle() -> None:
    clock = FakeClock()
    agg = quiet_stream(clock)
    clock.now += 9.9
    step = agg.tick(0)                       # both sources still active: nothing moves
    assert (step.closed, step.state) == ([], None) and agg.watermark(0) == 125_000
    clock.now += 0.1                         # 10 s: every source is idle
    step = agg.tick(0)
    assert counts(step.closed) == [("tumbling_60s", 120_000, 1)]   # the 125 s record's window
    assert step.state is not None and step.state["watermark"] == 190_000   # the largest seen
    agg.settle(step)
    assert agg.watermark(0) == 190_000
    assert agg.tick(0).closed == [] and agg.tick(0).state is None   # once only
    # the window of 190 s stays open: nothing passed its end; a source that wakes up behind
    # the flushed watermark is late (as after any idle period), and folds where it still can
    assert agg.update("g", sourced(150_000, 1, 2), 0) == [] and agg.late_records == 1
    closed = agg.update("g", sourced(250_000, 1, 3), 0)       # source 0 is still idle
    assert counts(closed) == [("tumbling_60s", 180_000, 1)]


def test_a_tick_moves_the_watermark_past_a_source_that_went_idle_first() -> None:
    clock = FakeClock()
    agg = WindowAggregator({}, (TUMBLING,), grace_ms=0, sources=(0, 1), idle_ms=10_000,
                           clock=clock)
    agg.update("g", sourced(1_000, 0, 0), 0)
    agg.update("g", sourced(2_000, 1, 0), 0)
    clock.now += 5
    assert agg.update("g", sourced(200_000, 0, 1), 0) == []   # source 1 holds it at 2 s
    clock.now += 5                                            # 1 idle, 0 heard 5 s ago
    step = agg.tick(0)
    assert counts(step.closed) == [("tumbling_60s", 0, 2)]
    agg.settle(step)
    assert agg.watermark(0) == 200_000


def test_a_taken_over_partition_starts_its_idle_time_at_the_first_tick() -> None:
    clock = FakeClock()
    store: dict[str, Any] = {}
    quiet_stream(clock, store)               # the worker that served partition 0 died
    clock.now += 60
    survivor = WindowAggregator(store, (TUMBLING,), grace_ms=0, sources=(0, 1),
                                idle_ms=10_000, clock=clock)
    assert survivor.tick(0).closed == []     # recovered: the sources get a fresh idle time
    clock.now += 10
    step = survivor.tick(0)
    assert counts(step.closed) == [("tumbling_60s", 120_000, 1)]
    survivor.settle(step)
    assert store[WATERMARK_PREFIX + "0"]["watermark"] == 190_000


def test_a_tick_leaves_partitions_without_state_and_aggregators_without_idleness_alone() -> None:
    clock = FakeClock()
    agg = quiet_stream(clock)
    clock.now += 3600
    assert agg.tick(1).closed == [] and agg.tick(1).state is None    # never heard of
    clock.now += 3600
    assert agg.tick(1).state is None         # ... its idle time did not start at a tick
    agg.update("g", sourced(500_000, 0, 2), 1)
    assert agg.watermark(1) is None          # so source 1 still holds partition 1 back
    never = WindowAggregator({}, (TUMBLING,), grace_ms=0, sources=(0,), clock=clock)
    never.update("g", sourced(1_000, 0, 0), 0)
    clock.now += 3600
    assert never.tick(0).closed == [] and never.tick(0).state is None
