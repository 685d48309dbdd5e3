"""Campaigns: near-duplicate clusters counted per event-time window.

One near-duplicate is a weak signal; a burst of near-identical comments within minutes is a
strong one. The index stage sends, for every indexed item, a `ClusterRecord` to
``content.clusters.v1`` keyed by its aggregation group (``content_type=<type>``: the
embeddings carry no market), so all windows of a group live on one partition. The ``campaigns``
agent folds them with the same `WindowAggregator` as the signal windows (`CAMPAIGN_FOLDER`),
and when a window closes sends a ``signals.campaigns.v1`` record: how many items the window
holds, how many of them are flagged near-duplicates, how many distinct clusters those belong
to, and the largest clusters.

Every item is sent, not only the near-duplicates, so a window closes as soon as the group's
stream moves past it (a watermark only moves with records), and the rate of near-duplicates is
known, not only their number. A cluster's size here is the number of its near-duplicates in the
window: the first item of a cluster (its id) is not a near-duplicate and is not counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stream.core.outputs import EmbeddingRecord
from stream.core.records import Position
from stream.similarity.index import VectorIndex
from stream.similarity.records import ClusterRecord, SimilarRecord
from stream.similarity.signals import index_update
from stream.windows.aggregator import Folder, window_header
from stream.windows.kinds import WindowKind

TOP_CLUSTERS = 5   # the largest clusters a campaign record lists


def cluster_group(content_type: str) -> str:
    """The aggregation group of a cluster record: its content type."""
    return f"content_type={content_type}"


def cluster_record(similar: SimilarRecord, source: Position) -> ClusterRecord:
    """The window stage's view of one indexed item."""
    duplicate = similar.near_duplicate
    of = duplicate.content_id if duplicate is not None and duplicate.flagged else None
    return ClusterRecord(group=cluster_group(similar.content_type), event_id=similar.event_id,
                         content_id=similar.content_id, content_type=similar.content_type,
                         event_time_ms=similar.event_time_ms,
                         cluster=similar.cluster or similar.content_id,
                         near_duplicate_of=of, source=source)


def index_with_clusters(
    index: VectorIndex, batch: Sequence[tuple[EmbeddingRecord, Position]], *, threshold: float,
    related_k: int
) -> tuple[list[SimilarRecord], list[ClusterRecord]]:
    """`index_update` in order (as `index_batch`, in one `VectorIndex.batch`), and each item's
    cluster record with the position of the embeddings record it came from; tombstones give
    neither."""
    similar: list[SimilarRecord] = []
    clusters: list[ClusterRecord] = []
    with index.batch():
        for record, where in batch:
            out = index_update(index, record, threshold=threshold, related_k=related_k)
            if out is not None:
                similar.append(out)
                clusters.append(cluster_record(out, where))
    return similar, clusters


def empty_campaign(spec: WindowKind, group: str, start_ms: int,
                   partition: int) -> dict[str, Any]:
    return {**window_header(spec, group, start_ms, partition), "count": 0,
            "near_duplicates": 0, "first_event_ms": None, "last_event_ms": None,
            "clusters": {}}


def fold_campaign(aggregate: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """A new aggregate with one cluster record added (the input is not modified)."""
    agg = {**aggregate, "clusters": dict(aggregate["clusters"])}
    ts = int(record["event_time_ms"])
    agg["count"] += 1
    agg["first_event_ms"] = ts if agg["first_event_ms"] is None else min(agg["first_event_ms"], ts)
    agg["last_event_ms"] = ts if agg["last_event_ms"] is None else max(agg["last_event_ms"], ts)
    if record.get("near_duplicate_of") is not None:
        agg["near_duplicates"] += 1
        cluster = record["cluster"]
        agg["clusters"][cluster] = agg["clusters"].get(cluster, 0) + 1
    return agg


def top_clusters(clusters: dict[str, int], n: int = TOP_CLUSTERS) -> list[dict[str, Any]]:
    """The `n` largest clusters, largest first, ties by cluster id."""
    ranked = sorted(clusters.items(), key=lambda item: (-item[1], item[0]))[:n]
    return [{"cluster": cluster, "near_duplicates": size} for cluster, size in ranked]


def campaign_record(aggregate: dict[str, Any]) -> dict[str, Any]:
    """The ``signals.campaigns.v1`` value of a closed window."""
    count, duplicates = aggregate["count"], aggregate["near_duplicates"]
    return {"window": aggregate["window"], "group": aggregate["group"], "count": count,
            "first_event_ms": aggregate["first_event_ms"],
            "last_event_ms": aggregate["last_event_ms"],
            "near_duplicates": duplicates,
            "near_duplicate_rate": duplicates / count if count else 0.0,
            "clusters": len(aggregate["clusters"]),
            "top_clusters": top_clusters(aggregate["clusters"])}


CAMPAIGN_FOLDER = Folder(empty=empty_campaign, fold=fold_campaign, emit=campaign_record)
