"""Near-duplicate clusters and campaign windows: the cluster rule on a real index, the campaign
folder against a brute-force count, the rebuild's clusters, and the window stage end to end."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.core.outputs import EmbeddingRecord
from stream.core.records import Position
from stream.similarity.ann import UsearchIndex
from stream.similarity.campaigns import (
    CAMPAIGN_FOLDER,
    TOP_CLUSTERS,
    campaign_record,
    cluster_record,
    empty_campaign,
    fold_campaign,
    index_with_clusters,
)
from stream.similarity.exact import ExactIndex
from stream.similarity.index import DIM, ItemInfo, VectorIndex
from stream.similarity.rebuild import apply_all
from stream.similarity.records import SimilarRecord
from stream.similarity.signals import index_batch
from stream.windows.aggregator import WindowAggregator
from stream.windows.kinds import HoppingWindow, TumblingWindow

THRESHOLD = 0.8
TUMBLING = TumblingWindow(60_000)
HOPPING = HoppingWindow(300_000, 60_000)
BASES = np.random.default_rng(7).standard_normal((4, DIM)).astype(np.float32)


def vector(base: int, noise: float, seed: int) -> np.ndarray:
    """A unit vector near `BASES[base]`: small noise is a near-duplicate, 1.5 mostly is not."""
    rng = np.random.default_rng(seed)
    out = BASES[base] / np.linalg.norm(BASES[base])
    out = out + noise * rng.standard_normal(DIM).astype(np.float32) / np.sqrt(DIM)
    return (out / np.linalg.norm(out)).astype(np.float32)


def embedding(cid: str, ts: int, vec: np.ndarray | None, kind: str = "comment") -> EmbeddingRecord:
    return EmbeddingRecord(f"ev-{cid}", cid, kind, ts, "minilm", vec)


def test_a_chain_of_copies_collapses_to_its_first_item() -> None:
    """c3 copies c2, which copies c1 (c3 is further from c1 than the threshold): all cluster c1;
    an unrelated item is its own cluster."""
    c1 = vector(0, 0.0, 1)
    c2 = (c1 + 0.6 * vector(1, 0.0, 2)) / np.linalg.norm(c1 + 0.6 * vector(1, 0.0, 2))
    c3 = (c2 + 0.6 * vector(1, 0.0, 3)) / np.linalg.norm(c2 + 0.6 * vector(1, 0.0, 3))
    assert float(c1 @ c3) < THRESHOLD <= min(float(c1 @ c2), float(c2 @ c3))
    records = [embedding("c1", 1, c1), embedding("c2", 2, c2), embedding("c3", 3, c3),
               embedding("other", 4, vector(3, 0.0, 4))]
    for index in (ExactIndex(), UsearchIndex()):
        out = {s.content_id: s for s in index_batch(index, records, threshold=THRESHOLD,
                                                    related_k=0)}
        assert out["c3"].near_duplicate is not None
        assert out["c3"].near_duplicate.content_id == "c2"
        assert {cid: s.cluster for cid, s in out.items()} == {
            "c1": "c1", "c2": "c1", "c3": "c1", "other": "other"}
        assert [s.to_json()["cluster"] for s in out.values()] == ["c1", "c1", "c1", "other"]
        hit = index.query(c3, 1)[0]
        assert (hit.content_id, hit.info.cluster) == ("c3", "c1")   # kept in the index


items = st.lists(st.tuples(st.integers(0, 3), st.sampled_from([0.05, 0.3, 1.5, 3.0]),
                           st.integers(0, 20)), min_size=1, max_size=25)


@settings(max_examples=40, deadline=None)
@given(items)
def test_every_cluster_is_an_earlier_root_and_copies_join_it(spec: list[Any]) -> None:
    """Whatever the sequence: a cluster id is an item that is its own cluster, not later than
    its members; a flagged near-duplicate has its earlier item's cluster, any other item its own."""
    records = [embedding(f"c{i}", ts, vector(base, noise, i))
               for i, (base, noise, ts) in enumerate(spec)]
    out = index_batch(ExactIndex(), records, threshold=THRESHOLD, related_k=0)
    cluster = {s.content_id: s.cluster for s in out}
    time = {s.content_id: s.event_time_ms for s in out}
    for s in out:
        assert cluster[s.cluster] == s.cluster and time[s.cluster] <= s.event_time_ms
        duplicate = s.near_duplicate
        if duplicate is not None and duplicate.flagged:
            assert s.cluster == cluster[duplicate.content_id]
        else:
            assert s.cluster == s.content_id


def test_an_update_is_compared_again_and_a_repeated_record_changes_nothing() -> None:
    index = ExactIndex()
    first = [embedding("a", 1, vector(0, 0.0, 1)), embedding("b", 2, vector(0, 0.05, 2))]
    index_batch(index, first, threshold=THRESHOLD, related_k=0)
    [again] = index_batch(index, first[1:], threshold=THRESHOLD, related_k=0)  # re-consumed
    assert again.cluster == "a"
    [moved] = index_batch(index, [embedding("b", 3, vector(2, 0.0, 3))], threshold=THRESHOLD,
                          related_k=0)                       # b edited into something else
    assert moved.cluster == "b" and moved.near_duplicate is not None
    assert not moved.near_duplicate.flagged


def test_the_rebuild_derives_the_same_clusters_whatever_the_partition_interleaving() -> None:
    """Two partitions of the compacted log, read in any interleaving: the items are indexed in
    event-time order, so a copy finds the earlier item's cluster; a deleted item is gone."""
    p0 = [embedding("a", 1, vector(0, 0.0, 1)), embedding("c", 3, vector(0, 0.1, 3))]
    p1 = [embedding("b", 2, vector(0, 0.1, 2)), embedding("x", 4, vector(1, 0.0, 4)),
          embedding("d", 5, vector(1, 0.1, 5)), embedding("x", 0, None)]   # one key: one part
    seen = set()
    for seed in range(6):
        rng = random.Random(seed)
        queues, log = [list(p0), list(p1)], []
        while any(queues):
            queue = rng.choice([q for q in queues if q])
            log.append(queue.pop(0))
        index = ExactIndex()
        apply_all(index, log, THRESHOLD)
        hits = {h.content_id: h.info.cluster_of(h.content_id)
                for h in index.query(vector(0, 0.0, 1), 10)}
        seen.add(tuple(sorted(hits.items())))
        assert len(index) == 4 and "x" not in hits
    assert seen == {(("a", "a"), ("b", "a"), ("c", "a"), ("d", "d"))}


@pytest.mark.parametrize("index", [ExactIndex(), UsearchIndex()], ids=["exact", "usearch"])
def test_the_cluster_survives_persist_and_load(index: VectorIndex, tmp_path: Any) -> None:
    index.upsert("a", vector(0, 0.0, 1), ItemInfo("comment", 1, "ev-a"))
    index.upsert("b", vector(0, 0.05, 2), ItemInfo("comment", 2, "ev-b", cluster="a"))
    index.persist(tmp_path)
    index.clear()
    index.load(tmp_path)
    assert {h.content_id: h.info.cluster for h in index.query(vector(0, 0.0, 1), 2)} == {
        "a": "", "b": "a"}
    assert ItemInfo.from_json({"content_type": "show", "event_time_ms": 1}).cluster_of("s") == "s"


def cluster_json(cid: str, ts: int, cluster: str, of: str | None, offset: int,
                 partition: int = 0) -> dict[str, Any]:
    return {"group": "content_type=comment", "event_id": f"ev-{cid}", "content_id": cid,
            "content_type": "comment", "event_time_ms": ts, "cluster": cluster,
            "near_duplicate_of": of,
            "source": {"topic": "content.embeddings.v1", "partition": partition,
                       "offset": offset}}


folded = st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(["k1", "k2", "k3", "k4",
                                                                     "k5", "k6", "k7"]),
                            st.booleans()), max_size=40)


@given(folded)
def test_the_campaign_folder_counts_like_brute_force(spec: list[tuple[int, str, bool]]) -> None:
    empty = empty_campaign(TUMBLING, "content_type=comment", 0, 0)
    agg = empty
    for i, (ts, cluster, flagged) in enumerate(spec):
        agg = fold_campaign(agg, cluster_json(f"c{i}", ts, cluster, "x" if flagged else None, i))
    out = campaign_record(agg)
    sizes = Counter(cluster for _, cluster, flagged in spec if flagged)
    assert empty["count"] == 0 and empty["clusters"] == {}          # nothing was mutated
    assert out["count"] == len(spec) and out["near_duplicates"] == sum(sizes.values())
    assert out["clusters"] == len(sizes)
    assert out["near_duplicate_rate"] == (sum(sizes.values()) / len(spec) if spec else 0.0)
    top = [(c["cluster"], c["near_duplicates"]) for c in out["top_clusters"]]
    assert top == sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_CLUSTERS]
    if spec:
        assert (out["first_event_ms"], out["last_event_ms"]) == (min(s[0] for s in spec),
                                                                  max(s[0] for s in spec))


def test_a_comment_campaign_closes_as_one_window_with_its_cluster() -> None:
    """Four copies in a minute (one re-sent after a crash), one unrelated comment, one earlier
    cluster's copy; the window closes when the stream moves past it."""
    t0 = 1_767_607_200_000
    records = [cluster_json("cm-1", t0 + 1_000, "cm-1", None, 0),
               cluster_json("cm-2", t0 + 2_000, "cm-1", "cm-1", 1),
               cluster_json("cm-3", t0 + 3_000, "cm-1", "cm-2", 2),
               cluster_json("cm-4", t0 + 4_000, "cm-1", "cm-1", 3),
               cluster_json("cm-9", t0 + 5_000, "cm-9", None, 4),
               cluster_json("cm-10", t0 + 6_000, "cm-0", "cm-0", 5)]
    aggregator = WindowAggregator({}, (TUMBLING, HOPPING), 0, folder=CAMPAIGN_FOLDER)
    closed: list[dict[str, Any]] = []
    for record in [*records, records[2], cluster_json("late", t0 + 3_600_000, "late", None, 6)]:
        closed += aggregator.update(record["group"], record, 0)
    assert aggregator.duplicates == 1
    [tumbling] = [w for w in closed if w["window"]["kind"] == "tumbling"]
    assert tumbling == {
        "window": {"kind": "tumbling", "name": "tumbling_60s", "start_ms": t0,
                   "end_ms": t0 + 60_000},
        "group": "content_type=comment", "count": 6, "first_event_ms": t0 + 1_000,
        "last_event_ms": t0 + 6_000, "near_duplicates": 4, "near_duplicate_rate": 4 / 6,
        "clusters": 2, "top_clusters": [{"cluster": "cm-1", "near_duplicates": 3},
                                        {"cluster": "cm-0", "near_duplicates": 1}]}
    assert len([w for w in closed if w["window"]["kind"] == "hopping"]) == 5


def test_index_with_clusters_pairs_each_item_with_its_source() -> None:
    batch = [(embedding("a", 1, vector(0, 0.0, 1)), Position("emb", 1, 10)),
             (embedding("gone", 0, None), Position("emb", 1, 11)),
             (embedding("b", 2, vector(0, 0.05, 2)), Position("emb", 1, 12))]
    similar, clusters = index_with_clusters(ExactIndex(), batch, threshold=THRESHOLD,
                                            related_k=0)
    assert [s.content_id for s in similar] == ["a", "b"]
    assert [c.to_json() for c in clusters] == [
        {"group": "content_type=comment", "event_id": "ev-a", "content_id": "a",
         "content_type": "comment", "event_time_ms": 1, "cluster": "a",
         "near_duplicate_of": None, "source": {"topic": "emb", "partition": 1, "offset": 10}},
        {"group": "content_type=comment", "event_id": "ev-b", "content_id": "b",
         "content_type": "comment", "event_time_ms": 2, "cluster": "a",
         "near_duplicate_of": "a", "source": {"topic": "emb", "partition": 1, "offset": 12}}]
    assert clusters[1].key == b"content_type=comment"
    unflagged = SimilarRecord("e", "z", "show", 1, None, (), "exact")
    assert cluster_record(unflagged, Position("emb", 0, 0)).cluster == "z"


def test_the_demo_prints_campaign_minutes_and_pauses_before_the_later_burst() -> None:
    from stream.cli.demo import format_campaign, waves

    window = {"window": {"kind": "tumbling", "name": "tumbling_60s", "start_ms": 0,
                         "end_ms": 60_000}, "group": "content_type=comment", "count": 4,
              "near_duplicates": 3, "clusters": 1,
              "top_clusters": [{"cluster": "cm-5043", "near_duplicates": 3}]}
    line = format_campaign(window)
    assert line is not None and "3 near-duplicates of 4 items in 1 cluster(s): cm-5043 ×3" in line
    assert format_campaign({**window, "near_duplicates": 0}) is None
    assert format_campaign({**window, "window": {**window["window"], "kind": "hopping"}}) is None

    def line_at(minute: int) -> tuple[bytes | None, bytes]:
        return None, f'{{"event_time": "2026-11-25T09:{minute:02d}:00Z"}}'.encode()

    sample = [line_at(0), (None, b"not json"), line_at(4), line_at(3), line_at(15), line_at(16)]
    assert [len(w) for w in waves(sample)] == [4, 2]
