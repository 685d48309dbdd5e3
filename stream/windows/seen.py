"""Which source offsets a partition of the window stage has folded, out of order included.

The window stage skips a record re-sent by the enrich stage (same source partition and offset)
instead of counting it twice. Keeping only the highest source offset folded assumed that each
source partition's records arrive in offset order. They need not: when a worker's delivery had
a hole (Faust's consumer took records as read that never reached the agent) and the partition
was taken over, the new owner re-enriched from the commit and the hole's records arrived after
later ones, and were skipped as repeats (two scale-out runs, windows one short). So the state of
each source also keeps a bitmap of the `SPAN` offsets up to the highest: a record inside it is
new exactly when its bit is clear. A record more than `SPAN` below the highest counts as seen
(as every record at or below the highest did before); so does one at or below the highest of a
state stored before the bitmap existed.
"""

from __future__ import annotations

import base64
from typing import Any, Literal

SPAN = 2048   # offsets below the highest whose folding is remembered one by one
_MASK = (1 << SPAN) - 1
_BYTES = SPAN // 8

Seen = Literal["new", "seen", "hole"]   # new: past the highest (or first); hole: below, unseen


def classify(entry: dict[str, Any] | None, offset: int) -> Seen:
    """Where `offset` stands against a source's stored ``{"offset": highest, "seen": bits}``."""
    highest = None if entry is None else entry.get("offset")
    if highest is None or offset > highest:
        return "new"
    below = highest - offset
    bits = entry.get("seen") if entry is not None else None
    if bits is None or below >= SPAN:
        return "seen"
    return "seen" if decode(bits) >> below & 1 else "hole"


def marked(entry: dict[str, Any] | None, offset: int) -> tuple[int, str]:
    """The highest offset and the encoded bitmap once `offset` is folded too."""
    highest = None if entry is None else entry.get("offset")
    if highest is None:
        return offset, encode(1)
    stored = entry.get("seen") if entry is not None else None
    bits = decode(stored) if stored is not None else _MASK   # stored before bitmaps: all seen
    if offset > highest:
        return offset, encode((bits << (offset - highest) | 1) & _MASK)
    if highest - offset < SPAN:
        bits |= 1 << (highest - offset)
    return highest, encode(bits)


def encode(bits: int) -> str:
    return base64.b64encode(bits.to_bytes(_BYTES, "big")).decode()


def decode(text: str) -> int:
    return int.from_bytes(base64.b64decode(text), "big")
