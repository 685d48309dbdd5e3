"""The batcher and length buckets, by example and by property."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from stream.core.batching import MicroBatcher, chunks, length_buckets


@given(st.lists(st.integers(min_value=0, max_value=512), max_size=300),
       st.integers(min_value=1, max_value=64))
def test_length_buckets_partition_the_batch_in_length_order(lengths: list[int], size: int) -> None:
    buckets = length_buckets(lengths, size)
    flat = [i for bucket in buckets for i in bucket]
    assert sorted(flat) == list(range(len(lengths)))          # every item exactly once
    assert all(1 <= len(b) <= size for b in buckets)           # none empty, none too big
    assert all(len(b) == size for b in buckets[:-1])           # only the last may be short
    assert [lengths[i] for i in flat] == sorted(lengths)       # neighbours have similar lengths


@given(st.lists(st.integers(), max_size=200), st.integers(min_value=1, max_value=50))
def test_chunks_keep_order_and_size(items: list[int], size: int) -> None:
    parts = list(chunks(items, size))
    assert [x for part in parts for x in part] == items
    assert all(1 <= len(p) <= size for p in parts)


# Each step: (seconds since the previous step, add an item?) — a random arrival pattern.
arrivals = st.lists(st.tuples(st.floats(min_value=0, max_value=2.0), st.booleans()), max_size=200)


@given(arrivals, st.integers(min_value=1, max_value=16), st.floats(min_value=0.01, max_value=1.0))
def test_micro_batcher_loses_nothing_and_respects_size_and_wait(
    steps: list[tuple[float, bool]], max_size: int, max_wait: float
) -> None:
    batcher: MicroBatcher[int] = MicroBatcher(max_size, max_wait)
    now, sent, batches = 0.0, 0, []
    added_at: dict[int, float] = {}
    for delta, add in steps:
        now += delta
        batch = batcher.poll(now)
        if batch is None and add:
            added_at[sent] = now
            batch = batcher.add(sent, now)
            sent += 1
        if batch:
            assert batch[-1] == batch[0] + len(batch) - 1           # arrival order kept
            waited = now - added_at[batch[0]]                        # due, at most one step late
            assert waited <= max_wait + delta + 1e-9 or len(batch) == max_size
            batches.append(batch)
    rest = batcher.flush()
    if rest:
        batches.append(rest)
    assert [x for b in batches for x in b] == list(range(sent))   # nothing lost or repeated
    assert all(len(b) <= max_size for b in batches)
    assert len(batcher) == 0


def test_micro_batcher_emits_a_full_batch_at_once() -> None:
    batcher: MicroBatcher[str] = MicroBatcher(max_size=2, max_wait_s=10)
    assert batcher.add("a", now=0) is None
    assert batcher.add("b", now=0) == ["a", "b"]
    assert batcher.flush() is None


def test_micro_batcher_emits_a_partial_batch_when_the_wait_ran_out() -> None:
    batcher: MicroBatcher[str] = MicroBatcher(max_size=10, max_wait_s=0.5)
    batcher.add("a", now=0.0)
    assert batcher.poll(now=0.4) is None
    assert batcher.poll(now=0.5) == ["a"]
