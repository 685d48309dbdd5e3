"""Offset bookkeeping of the worker's consumer (`stream.worker.transport`), pure: which
records an input partition may deliver, which the drain loop has read, and when a fetched or
held record is stale after a seek. The consumer's docstring says which Faust behaviour each
answers."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Literal

from faust.types import TP


class ReadOffsets(defaultdict[TP, int | None]):
    """Faust's read offsets (the last record of each partition its drain loop delivered), but
    a record the consumer's callback dropped is not recorded as read: the drain loop records
    every record it handed to the callback, and would then drop the records a seek fetches
    again before it as already read."""

    def __init__(self, offsets: Mapping[TP, int | None] | None = None) -> None:
        super().__init__(lambda: None, offsets or {})
        self.dropped: dict[TP, int] = {}

    def unread(self, tp: TP, offset: int) -> None:
        """The record at `offset` was not delivered: the next write of it is not taken."""
        self.dropped[tp] = offset

    def forget(self, tp: TP) -> None:
        """`tp` was revoked: a drop noted for it no longer applies."""
        self.dropped.pop(tp, None)

    def __setitem__(self, tp: TP, offset: int | None) -> None:
        if offset is not None and self.dropped.get(tp) == offset:
            del self.dropped[tp]
            return
        super().__setitem__(tp, offset)


class NextOffsets:
    """The next offset each partition must deliver, and the holes that a fetch would leave."""

    ACCEPT_AFTER = 3   # the same jump seen this many times in a row: records that are gone

    def __init__(self) -> None:
        self.next: dict[TP, int] = {}
        self.refused: dict[TP, tuple[int, int]] = {}   # (expected, times refused)
        self.jumped: dict[TP, int] = {}   # the record past a hole let through (records gone)

    def sought(self, tp: TP, offset: int | None) -> None:
        """A seek moved `tp` to `offset` (None: to its beginning, where anything may come)."""
        self.jumped.pop(tp, None)
        if offset is None:
            self.next.pop(tp, None)
        else:
            self.next[tp] = offset

    def forget(self, tp: TP) -> None:
        self.next.pop(tp, None)
        self.refused.pop(tp, None)
        self.jumped.pop(tp, None)

    def admit(self, tp: TP, offset: int) -> int | None:
        """Whether the record at `offset` may be delivered: None if so (and it is counted as
        delivered), else the offset `tp` must be sought back to first."""
        expected = self.next.get(tp)
        if expected is not None and offset > expected:
            if self.refuse(tp, expected):
                return expected
            self.jumped[tp] = offset
        self.refused.pop(tp, None)
        self.next[tp] = offset + 1
        return None

    def refuse(self, tp: TP, at: int) -> bool:
        """Whether to refuse a jump past `at` once more: not when it came `ACCEPT_AFTER` times
        in a row (then it is taken for records that are gone)."""
        last, times = self.refused.get(tp, (at, 0))
        times = times + 1 if last == at else 1
        if times >= self.ACCEPT_AFTER:
            return False
        self.refused[tp] = (at, times)
        return True

    def hole(self, tp: TP, read: int, offset: int) -> int | None:
        """The drain loop saw a jump from its read offset `read` to the record at `offset`,
        which it would commit over as a gap: the offset to fetch `tp` again from (`read`,
        the last record read or where a seek put it: a duplicate at worst), or None where the
        jump is real (let through by `admit`, or seen `ACCEPT_AFTER` times in a row)."""
        if self.jumped.get(tp) == offset or not self.refuse(tp, read):
            self.refused.pop(tp, None)
            return None
        return read


def fetched_again(offset: int, position: int | Literal[False] | None) -> bool:
    """Whether a fetched record at `offset` will be fetched again: the client's position (its
    next fetch) is at or before it, because a seek moved it back after the fetch, or a reset to
    the beginning is pending (None). False when the client does not have the partition."""
    if position is False:
        return False
    return position is None or offset >= position


def sought_back_over(offset: int, expected: int | None,
                     position: int | Literal[False] | None) -> bool:
    """Whether a record the guard admitted at `offset` was made stale by a seek back since:
    the offset the guard now expects next (`expected`; it was `offset + 1` at the admission)
    is at or before it, or the client's position is (`fetched_again`). Such a record is
    fetched and delivered again after the records before it, and a "gap" before it is none.
    A jump the guard itself let pass (records that are gone) ends below `expected`."""
    return (expected is not None and offset >= expected) or fetched_again(offset, position)
