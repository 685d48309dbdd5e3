"""The interleaving of a topic replay's partitions is a sort key per chunk (`chunk_order`), so an
engine that processes each partition apart (Spark) writes and folds in the local replay's order."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from stream.replay.sources import chunk_order, pick_partition

heads = st.dictionaries(st.integers(0, 5), st.lists(st.integers(0, 20), min_size=1, max_size=8),
                        min_size=1, max_size=4)


def greedy(starts: dict[int, list[int]]) -> list[tuple[int, int]]:
    """What `KafkaSource` does: always the partition whose next chunk starts earliest."""
    next_chunk = dict.fromkeys(starts, 0)
    order = []
    while next_chunk:
        p = pick_partition({q: starts[q][i] for q, i in next_chunk.items()})
        order.append((p, next_chunk[p]))
        next_chunk[p] += 1
        if next_chunk[p] == len(starts[p]):
            del next_chunk[p]
    return order


def by_key(starts: dict[int, list[int]]) -> list[tuple[int, int]]:
    keys = []
    for p, firsts in starts.items():
        for i, latest in enumerate(itertools.accumulate(firsts, max)):
            keys.append(chunk_order(p, i, latest))
    return [(p, i) for _, p, i in sorted(keys)]


@given(heads)
def test_sorting_by_chunk_order_is_the_greedy_interleaving(starts: dict[int, list[int]]) -> None:
    assert by_key(starts) == greedy(starts)


def test_a_chunk_that_starts_early_follows_its_predecessor() -> None:
    # partition 0's second chunk starts at 1, before partition 1's at 5, but comes after its own
    # first chunk (10), which had to wait for partition 1
    assert greedy({0: [10, 1], 1: [5]}) == by_key({0: [10, 1], 1: [5]}) == [(1, 0), (0, 0), (0, 1)]
