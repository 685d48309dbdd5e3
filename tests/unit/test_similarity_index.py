"""The similarity indexes against the exact reference: recall, deletes, updates, filters, snapshots.

Only results are asserted (which items come back, their cosines), never how long a query took.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.similarity.ann import UsearchIndex
from stream.similarity.exact import ExactIndex
from stream.similarity.index import Filter, ItemInfo, VectorIndex, as_vector

DIM = 384
TYPES = ("show", "episode", "comment")


def clustered(count: int, seed: int, centres: int = 40, noise: float = 0.6) -> np.ndarray:
    """Unit vectors around random centres: structure like real embeddings (topics, copies)."""
    rng = np.random.default_rng(seed)
    middle = rng.standard_normal((centres, DIM)).astype(np.float32)
    points = middle[rng.integers(0, centres, count)]
    points += rng.standard_normal((count, DIM)).astype(np.float32) * noise
    return np.asarray(points / np.linalg.norm(points, axis=1, keepdims=True), dtype=np.float32)


def info(i: int) -> ItemInfo:
    return ItemInfo(TYPES[i % 3], event_time_ms=1_000 * i, event_id=f"ev-{i}")


def fill(index: VectorIndex, vectors: np.ndarray) -> VectorIndex:
    for i, vector in enumerate(vectors):
        index.upsert(f"c-{i}", vector, info(i))
    return index


@pytest.fixture(scope="module")
def fixed_set() -> tuple[np.ndarray, np.ndarray]:
    return clustered(3_000, seed=7), clustered(100, seed=8)


def kinds() -> list[VectorIndex]:
    return [ExactIndex(), UsearchIndex()]


def test_ann_recall_at_10_against_exact(fixed_set: tuple[np.ndarray, np.ndarray]) -> None:
    base, queries = fixed_set
    exact, ann = fill(ExactIndex(), base), fill(UsearchIndex(), base)
    recalls = []
    for query in queries:
        truth = {h.content_id for h in exact.query(query, 10)}
        found = ann.query(query, 10)
        recalls.append(len(truth & {h.content_id for h in found}) / 10)
        cosines = [h.cosine for h in found]
        assert cosines == sorted(cosines, reverse=True)
        for hit in found:   # cosines agree with the exact ones (f16 storage: ~1e-3)
            assert hit.cosine == pytest.approx(float(base[int(hit.content_id[2:])] @ query),
                                               abs=5e-3)
    assert float(np.mean(recalls)) >= 0.95


def test_filtered_ann_matches_exact(fixed_set: tuple[np.ndarray, np.ndarray]) -> None:
    base, queries = fixed_set
    exact, ann = fill(ExactIndex(), base), fill(UsearchIndex(), base)
    where = Filter(content_types=frozenset({"comment"}), exclude=frozenset({"c-2"}),
                   not_after_ms=1_500_000)
    overlap = []
    for query in queries[:30]:
        truth = [h.content_id for h in exact.query(query, 10, where)]
        found = ann.query(query, 10, where)
        assert len(found) == 10
        assert all(where.accepts(h.content_id, h.info) for h in found)
        overlap.append(len(set(truth) & {h.content_id for h in found}) / 10)
    assert float(np.mean(overlap)) >= 0.95


@pytest.mark.parametrize("index", kinds(), ids=lambda i: i.kind)
def test_delete_and_update(index: VectorIndex) -> None:
    vectors = clustered(50, seed=1)
    fill(index, vectors)
    assert len(index) == 50
    assert index.delete("c-3") and not index.delete("c-3")
    assert len(index) == 49 and index.get("c-3") is None
    assert all(h.content_id != "c-3" for h in index.query(vectors[3], 49))
    # an update replaces the vector (and the info): the old one is not found any more
    index.upsert("c-4", vectors[10], ItemInfo("show", 99, "ev-new"))
    assert len(index) == 49
    top = index.query(vectors[10], 2)
    assert {h.content_id for h in top} == {"c-4", "c-10"}
    assert next(h for h in top if h.content_id == "c-4").info.event_id == "ev-new"
    assert all(h.content_id != "c-4" or h.cosine > 0.99 for h in index.query(vectors[4], 3))
    stored = index.get("c-4")
    assert stored is not None and float(stored @ vectors[10]) > 0.999
    # delete everything: queries return nothing, re-adding works
    for i in range(50):
        index.delete(f"c-{i}")
    assert len(index) == 0 and index.query(vectors[0], 5) == []
    index.upsert("c-0", vectors[0], info(0))
    assert [h.content_id for h in index.query(vectors[0], 5)] == ["c-0"]


@pytest.mark.parametrize("index", kinds(), ids=lambda i: i.kind)
def test_persist_and_load(index: VectorIndex, tmp_path: Path) -> None:
    vectors = clustered(200, seed=2)
    fill(index, vectors)
    index.delete("c-5")
    index.persist(tmp_path / "snap")
    again = type(index)()
    again.load(tmp_path / "snap")
    assert len(again) == 199 and again.get("c-5") is None
    for query in vectors[:20]:
        assert ([h.content_id for h in again.query(query, 5)]
                == [h.content_id for h in index.query(query, 5)])
    again.upsert("c-new", vectors[5], info(5))   # keys continue after a load
    assert again.query(vectors[5], 1)[0].content_id == "c-new"


@given(st.lists(st.tuples(st.integers(0, 19), st.booleans()), min_size=1, max_size=60),
       st.sampled_from([None, "show", "comment"]), st.integers(0, 25_000))
def test_any_sequence_of_upserts_and_deletes_matches_exact(
        steps: list[tuple[int, bool]], content_type: str | None, not_after: int) -> None:
    """Whatever was upserted and deleted, in any order, the small ANN index returns exactly
    what the brute force returns (with 20 items, HNSW search is exhaustive)."""
    vectors = clustered(20, seed=3)
    exact, ann = ExactIndex(), UsearchIndex()
    for i, delete in steps:
        for index in (exact, ann):
            if delete:
                index.delete(f"c-{i}")
            else:
                index.upsert(f"c-{i}", vectors[(i * 7) % 20], info(i))
    where = Filter(content_types=None if content_type is None else frozenset({content_type}),
                   not_after_ms=not_after)
    for query in vectors[:5]:
        want = exact.query(query, 5, where)
        got = ann.query(query, 5, where)
        assert [h.content_id for h in got] == [h.content_id for h in want] or (
            [round(h.cosine, 2) for h in got] == [round(h.cosine, 2) for h in want])
    assert len(ann) == len(exact)


def test_as_vector_checks_the_dimension_and_normalises() -> None:
    with pytest.raises(ValueError, match="3 dimensions"):
        as_vector([1.0, 2.0, 2.0])
    assert float(np.linalg.norm(as_vector(np.full(DIM, 3.0)))) == pytest.approx(1.0)
