"""The similarity signals, pure functions over an index: `near_duplicate` and `related`.

* `near_duplicate`: the most similar *earlier* item (event time not later than its own) of the same
  content type, with its cosine, `flagged` when the cosine reaches the calibrated threshold
  (``SIGNALS_NEAR_DUPLICATE_THRESHOLD``; `signals similar --calibrate`). Same content type because
  the copies that matter are of the same kind: a re-uploaded episode, a copied show description,
  a pasted comment.
* `related`: the `k` most similar catalogue items (shows and episodes) for a show or an episode,
  the item itself excluded — the cold-start list of recommendations and search.

`index_update` is the index stage's whole step for one embedding record: query first (so an
item is never its own near-duplicate and an update is compared with the others), then upsert;
a tombstone deletes.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from stream.core.outputs import EmbeddingRecord, NearDuplicate, RelatedItem, SimilarRecord
from stream.similarity.index import Filter, ItemInfo, VectorIndex

CATALOGUE_TYPES = frozenset({"show", "episode"})


def near_duplicate(index: VectorIndex, content_id: str, vector: np.ndarray, info: ItemInfo,
                   threshold: float) -> NearDuplicate | None:
    where = Filter(content_types=frozenset({info.content_type}),
                   exclude=frozenset({content_id}), not_after_ms=info.event_time_ms)
    hits = index.query(vector, 1, where)
    if not hits:
        return None
    best = hits[0]
    return NearDuplicate(content_id=best.content_id, event_id=best.info.event_id,
                         cosine=best.cosine, threshold=threshold,
                         flagged=best.cosine >= threshold)


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
    info = ItemInfo(record.content_type, record.event_time_ms, record.event_id,
                    record.creator_id, record.show_id)
    duplicate = near_duplicate(index, record.content_id, record.vector, info, threshold)
    neighbours = (related(index, record.content_id, record.vector, related_k)
                  if record.content_type in CATALOGUE_TYPES and related_k > 0 else ())
    index.upsert(record.content_id, record.vector, info)
    return SimilarRecord(event_id=record.event_id, content_id=record.content_id,
                         content_type=record.content_type, event_time_ms=record.event_time_ms,
                         near_duplicate=duplicate, related=neighbours, index=index.kind)


def index_batch(index: VectorIndex, records: Iterable[EmbeddingRecord], *, threshold: float,
                related_k: int) -> list[SimilarRecord]:
    """`index_update` in order: a copy later in the same batch finds the earlier one."""
    out = []
    for record in records:
        similar = index_update(index, record, threshold=threshold, related_k=related_k)
        if similar is not None:
            out.append(similar)
    return out
