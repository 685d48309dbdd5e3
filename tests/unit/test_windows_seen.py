"""The window stage's record of the source offsets it folded (stream/windows/seen.py): a record
re-sent is skipped, one that arrives after later records of its source is still counted."""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from stream.windows.aggregator import WindowAggregator
from stream.windows.kinds import TumblingWindow
from stream.windows.seen import SPAN, classify, marked

TUMBLING = TumblingWindow(10_000)


def folded(offsets: list[int]) -> dict[str, Any] | None:
    entry: dict[str, Any] | None = None
    for offset in offsets:
        highest, bits = marked(entry, offset)
        entry = {"offset": highest, "seen": bits}
    return entry


def test_a_hole_below_the_highest_is_new_until_it_is_folded() -> None:
    # a worker delivered 20..24 and 30..39 (25..29 never reached its agent), then died
    entry = folded([*range(20, 25), *range(30, 40)])
    assert [classify(entry, o) for o in (24, 27, 39, 40)] == ["seen", "hole", "seen", "new"]
    entry = folded([*range(20, 25), *range(30, 40), 27])   # the next owner re-enriched 20..
    assert classify(entry, 27) == "seen" and classify(entry, 28) == "hole"
    assert classify(entry, 39 - SPAN) == "seen"   # beyond the bitmap: taken as folded


def test_a_state_stored_before_the_bitmap_has_folded_everything_up_to_its_highest() -> None:
    old = {"offset": 39, "event_ms": 0}
    assert classify(old, 27) == "seen" and classify(old, 40) == "new"
    highest, bits = marked(old, 45)
    assert classify({"offset": highest, "seen": bits}, 41) == "hole"
    assert classify({"offset": highest, "seen": bits}, 39) == "seen"


@given(st.lists(st.integers(0, 3 * SPAN // 4), max_size=200))
def test_each_offset_is_new_once_in_any_order_with_repeats(offsets: list[int]) -> None:
    entry: dict[str, Any] | None = None
    counted = []
    for offset in offsets:
        if classify(entry, offset) != "seen":
            counted.append(offset)
            highest, bits = marked(entry, offset)
            entry = {"offset": highest, "seen": bits}
    assert sorted(counted) == sorted(set(offsets))


def record(source: int, offset: int) -> dict[str, Any]:
    return {"event_time_ms": offset * 1_000, "event_type": "comment.created", "signals": {},
            "flags": [], "source": {"topic": "content.events.v1", "partition": source,
                                    "offset": offset}}


@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 60)), max_size=120))
def test_window_counts_do_not_depend_on_the_order_records_arrive_in(
        sends: list[tuple[int, int]]) -> None:
    """Records of two sources, in any order and repeated: every window counts each distinct
    (source, offset) once (a grace longer than the input, so nothing is late)."""
    aggregator = WindowAggregator({}, (TUMBLING,), grace_ms=10**9)
    for source, offset in sends:
        aggregator.update("g", record(source, offset), 0)
    got = Counter({w["window"]["start_ms"]: w["count"] for w in aggregator.flush()})
    want = Counter(o * 1_000 // 10_000 * 10_000 for _, o in set(sends))
    assert got == want
