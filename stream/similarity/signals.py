"""The similarity signals, pure functions over an index: `near_duplicate` and `related`.

* `near_duplicate`: the most similar *earlier* item (event time not later than its own) of the same
  content type, with its cosine, `flagged` when the cosine reaches the calibrated threshold
  (``SIGNALS_NEAR_DUPLICATE_THRESHOLD``; `signals similar --calibrate`). Same content type because
  the copies that matter are of the same kind: a re-uploaded episode, a copied show description,
  a pasted comment.
* `related`: the `k` most similar catalogue items (shows and episodes) for a show or an episode,
  the item itself excluded — the cold-start list of recommendations and search.

Each item also gets a near-duplicate *cluster* (`cluster_of`), kept beside its vector in the
index: the cluster of the earlier item it is a flagged near-duplicate of, else its own content
id. Chains collapse (c3 copies c2, which copies c1: all three are cluster c1), so a campaign of
copies of copies counts as one cluster (`stream.similarity.campaigns`).

`index_update` is the index stage's whole step for one embedding record: query first (so an
item is never its own near-duplicate and an update is compared with the others), then upsert
with its cluster; a tombstone deletes. `index_item` is that step without the signals (the
rebuild).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from stream.core.outputs import EmbeddingRecord
from stream.similarity.index import Filter, Hit, ItemInfo, VectorIndex
from stream.similarity.records import NearDuplicate, RelatedItem, SimilarRecord

CATALOGUE_TYPES = frozenset({"show", "episode"})


def nearest_earlier(index: VectorIndex, content_id: str, vector: np.ndarray,
                    info: ItemInfo) -> Hit | None:
    """The most similar other item of the same content type, not later than this one."""
    where = Filter(content_types=frozenset({info.content_type}),
                   exclude=frozenset({content_id}), not_after_ms=info.event_time_ms)
    hits = index.query(vector, 1, where)
    return hits[0] if hits else None


def as_near_duplicate(best: Hit | None, threshold: float) -> NearDuplicate | None:
    if best is None:
        return None
    return NearDuplicate(content_id=best.content_id, event_id=best.info.event_id,
                         cosine=best.cosine, threshold=threshold,
                         flagged=best.cosine >= threshold)


def near_duplicate(index: VectorIndex, content_id: str, vector: np.ndarray, info: ItemInfo,
                   threshold: float) -> NearDuplicate | None:
    return as_near_duplicate(nearest_earlier(index, content_id, vector, info), threshold)


def cluster_of(content_id: str, best: Hit | None, threshold: float) -> str:
    """The cluster rule: the cluster of the earlier item this one is a flagged near-duplicate
    of (so chains collapse to their first item), else the item's own id."""
    if best is None or best.cosine < threshold:
        return content_id
    return best.info.cluster_of(best.content_id)


def item_info(record: EmbeddingRecord, cluster: str = "") -> ItemInfo:
    return ItemInfo(record.content_type, record.event_time_ms, record.event_id,
                    record.creator_id, record.show_id, cluster)


def index_item(index: VectorIndex, record: EmbeddingRecord, threshold: float) -> Hit | None:
    """Query the nearest earlier item, then upsert `record` (not a tombstone) with its cluster;
    returns that nearest item."""
    assert record.vector is not None
    info = item_info(record)
    best = nearest_earlier(index, record.content_id, record.vector, info)
    cluster = cluster_of(record.content_id, best, threshold)
    index.upsert(record.content_id, record.vector, item_info(record, cluster))
    return best


def related(index: VectorIndex, content_id: str, vector: np.ndarray, k: int,
            types: frozenset[str] = CATALOGUE_TYPES) -> tuple[RelatedItem, ...]:
    hits = index.query(vector, k, Filter(content_types=types, exclude=frozenset({content_id})))
    return tuple(RelatedItem(h.content_id, h.info.content_type, h.cosine) for h in hits)


def index_update(index: VectorIndex, record: EmbeddingRecord, *, threshold: float,
                 related_k: int) -> SimilarRecord | None:
    """Apply one record to the index; the signals of an item (None for a deletion)."""
    if record.vector is None:
        index.delete(record.content_id)
        return None
    neighbours = (related(index, record.content_id, record.vector, related_k)
                  if record.content_type in CATALOGUE_TYPES and related_k > 0 else ())
    best = index_item(index, record, threshold)
    return SimilarRecord(event_id=record.event_id, content_id=record.content_id,
                         content_type=record.content_type, event_time_ms=record.event_time_ms,
                         near_duplicate=as_near_duplicate(best, threshold),
                         cluster=cluster_of(record.content_id, best, threshold),
                         related=neighbours, index=index.kind)


def index_batch(index: VectorIndex, records: Iterable[EmbeddingRecord], *, threshold: float,
                related_k: int) -> list[SimilarRecord]:
    """`index_update` in order, in one `VectorIndex.batch`: a copy later in the same batch finds
    the earlier one."""
    out = []
    with index.batch():
        for record in records:
            similar = index_update(index, record, threshold=threshold, related_k=related_k)
            if similar is not None:
                out.append(similar)
    return out
