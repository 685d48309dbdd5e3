"""Pure batching: micro-batches by size and wait, and length buckets inside a batch.

The live worker batches with Faust's ``take_events``; replay and bench batch with `MicroBatcher`,
whose clock is passed in so tests can drive it. `length_buckets` groups a batch by token length so
the encoder pads each group only to its own longest item.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


def length_buckets(lengths: Sequence[int], max_bucket: int) -> list[list[int]]:
    """Indices of `lengths` sorted by length (stable), cut into runs of at most `max_bucket`."""
    if max_bucket < 1:
        raise ValueError("max_bucket must be >= 1")
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    return [order[i:i + max_bucket] for i in range(0, len(order), max_bucket)]


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of at most `size` items (itertools.batched arrives in Python 3.12)."""
    if size < 1:
        raise ValueError("size must be >= 1")
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass
class MicroBatcher(Generic[T]):
    """Collects items until `max_size` or until `max_wait_s` passed since the first one.

    `add` returns a full batch when one is ready, `poll` returns a batch whose wait has run out,
    and `flush` returns whatever is left. Items keep their arrival order; none is dropped.
    """

    max_size: int
    max_wait_s: float
    _items: list[T] = field(default_factory=list)
    _first_at: float | None = None

    def add(self, item: T, now: float) -> list[T] | None:
        if not self._items:
            self._first_at = now
        self._items.append(item)
        if len(self._items) >= self.max_size:
            return self.flush()
        return self.poll(now)

    def poll(self, now: float) -> list[T] | None:
        if self._items and self._first_at is not None and now - self._first_at >= self.max_wait_s:
            return self.flush()
        return None

    def flush(self) -> list[T] | None:
        if not self._items:
            return None
        batch, self._items, self._first_at = self._items, [], None
        return batch

    def __len__(self) -> int:
        return len(self._items)
