"""The worker consumer's offset rules (stream/worker/offsets.py): its filter of records fetched
before a seek back, its refusal to deliver past a hole in an input partition (in what a fetch
hands out, and in what the drain loop would commit over as a gap), and its rule for a record
the drain loop held while a seek went back over it (dropped, and not taken as read)."""

from __future__ import annotations

from faust.types import TP
from hypothesis import given
from hypothesis import strategies as st

from stream.worker.offsets import NextOffsets, ReadOffsets, fetched_again, sought_back_over

P0 = TP("content.events.v1", 0)


def test_a_record_is_fetched_again_when_a_seek_moved_the_position_back_to_it() -> None:
    # fetched 54..59 (position 60), then Faust sought the partition back to its commit, 48
    assert [o for o in range(54, 60) if not fetched_again(o, 60)] == list(range(54, 60))
    assert [o for o in range(54, 60) if not fetched_again(o, 48)] == []
    assert [o for o in range(54, 60) if not fetched_again(o, 57)] == [54, 55, 56]
    assert fetched_again(3, None)             # a seek to the beginning is pending
    assert not fetched_again(3, False)        # the client no longer has the partition


P0 = TP("content.events.v1", 0)


def test_a_record_past_the_next_offset_is_held_and_the_hole_named() -> None:
    expected = NextOffsets()
    expected.sought(P0, 16)                     # Faust's seek to the committed offset
    assert expected.admit(P0, 23) == 16         # a record of a fetch made before the seek
    assert expected.admit(P0, 16) is None       # fetched again from the hole
    assert expected.admit(P0, 17) is None
    assert expected.admit(P0, 19) == 18


def test_without_a_known_position_the_first_record_sets_it() -> None:
    expected = NextOffsets()
    expected.sought(P0, None)                   # to the beginning: anything may come first
    assert expected.admit(P0, 7) is None
    assert expected.admit(P0, 9) == 8
    expected.forget(P0)                         # revoked: a later owner's offsets are unknown
    assert expected.admit(P0, 40) is None


def test_a_jump_that_comes_back_is_taken_for_records_that_are_gone() -> None:
    expected = NextOffsets()
    expected.sought(P0, 5)
    refusals = [expected.admit(P0, 12) for _ in range(NextOffsets.ACCEPT_AFTER)]
    assert refusals == [5] * (NextOffsets.ACCEPT_AFTER - 1) + [None]
    assert expected.admit(P0, 13) is None


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 30)), max_size=60))
def test_what_is_admitted_has_no_hole_unless_the_same_jump_repeats(
        steps: list[tuple[bool, int]]) -> None:
    """Seeks and records in any order: each admitted record is at or before the next offset,
    except a jump refused `ACCEPT_AFTER - 1` times in a row just before."""
    expected, streak = NextOffsets(), (None, 0)   # (next offset refused at, times in a row)
    for seek, offset in steps:
        if seek:
            expected.sought(P0, offset)
            continue
        before = expected.next.get(P0)
        if expected.admit(P0, offset) is None:
            past_hole = before is not None and offset > before
            assert not past_hole or streak == (before, NextOffsets.ACCEPT_AFTER - 1)
            assert expected.next[P0] == offset + 1
            streak = (None, 0)
        else:
            assert before is not None and offset > before
            streak = (before, streak[1] + 1 if streak[0] == before else 1)


def test_a_gap_the_drain_loop_sees_is_fetched_again_unless_the_guard_let_it_through() -> None:
    expected = NextOffsets()
    # read offset 40 after a seek to the commit; the guard had admitted up to 54 before it
    assert expected.hole(P0, 40, 53) == 40      # fetch again from 40: not a gap to commit over
    expected.sought(P0, 5)                      # retention deleted 5..11: the guard let 12 pass
    assert [expected.admit(P0, 12) for _ in range(NextOffsets.ACCEPT_AFTER)][-1] is None
    assert expected.hole(P0, 4, 12) is None     # the same jump: a gap Faust may commit over
    expected.sought(P0, 13)                     # a seek: what the guard let through is past
    refusals = [expected.hole(P0, 20, 30) for _ in range(NextOffsets.ACCEPT_AFTER)]
    assert refusals == [20] * (NextOffsets.ACCEPT_AFTER - 1) + [None]   # it keeps coming: real


def test_a_record_held_across_a_seek_back_over_it_is_stale() -> None:
    # admitted 19 (the guard then expected 20); a seek to the commit, 17, completed meanwhile
    assert sought_back_over(19, 17, 17)
    assert sought_back_over(19, 17, 40)         # the client already fetched on from 17
    assert sought_back_over(19, None, None)     # a seek to the beginning is pending
    assert not sought_back_over(19, 20, 40)     # no seek: delivered as admitted
    # a jump the guard let pass (retention deleted 5..11): a gap Faust may commit over
    assert not sought_back_over(12, 13, 30)


@given(st.integers(0, 50), st.integers(0, 50), st.integers(0, 50))
def test_only_a_seek_to_or_before_a_record_makes_it_stale(admitted: int, sought: int,
                                                          position: int) -> None:
    """Admitted at `admitted` (next expected `admitted + 1`), then a seek to `sought`: the record
    is stale exactly when the seek went to it or before (or the client's position did)."""
    expected = NextOffsets()
    expected.sought(P0, admitted)
    assert expected.admit(P0, admitted) is None
    assert not sought_back_over(admitted, expected.next[P0], admitted + 1 + position)
    expected.sought(P0, sought)
    stale = sought_back_over(admitted, expected.next[P0], admitted + 1 + position)
    assert stale == (sought <= admitted)


def test_a_dropped_record_is_not_taken_as_read() -> None:
    offsets = ReadOffsets({P0: 16})             # where the seek back put it
    offsets.unread(P0, 19)                      # the callback dropped the held record 19
    offsets[P0] = 19                            # the drain loop records what it handed over
    assert offsets[P0] == 16
    offsets[P0] = 17                            # fetched again: recorded
    offsets[P0] = 19                            # and 19 too, this time
    assert offsets[P0] == 19 and offsets[TP("other", 0)] is None
