"""The index stage's records, typed like `stream.core.outputs` (whose `serialise` writes them):
``content.similar.v1`` (`SimilarRecord`, with its `NearDuplicate` and `RelatedItem`) and
``content.clusters.v1`` (`ClusterRecord`). Each ``to_json`` is the one definition of its wire
shape (``schemas/<topic>.json``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stream.core.outputs import position_json
from stream.core.records import Position


@dataclass(frozen=True, slots=True)
class NearDuplicate:
    """The most similar earlier item of the same content type; `flagged` at the threshold."""

    content_id: str
    event_id: str
    cosine: float
    threshold: float
    flagged: bool

    def to_json(self) -> dict[str, Any]:
        return {"content_id": self.content_id, "event_id": self.event_id,
                "cosine": self.cosine, "threshold": self.threshold, "flagged": self.flagged}


@dataclass(frozen=True, slots=True)
class RelatedItem:
    content_id: str
    content_type: str
    cosine: float

    def to_json(self) -> dict[str, Any]:
        return {"content_id": self.content_id, "content_type": self.content_type,
                "cosine": self.cosine}


@dataclass(frozen=True, slots=True)
class SimilarRecord:
    """A ``content.similar.v1`` value, keyed by ``content_id``: one per indexed item."""

    event_id: str
    content_id: str
    content_type: str
    event_time_ms: int
    near_duplicate: NearDuplicate | None
    related: tuple[RelatedItem, ...]
    index: str
    cluster: str = ""   # its near-duplicate cluster (`stream.similarity.signals.cluster_of`)

    @property
    def key(self) -> bytes:
        return self.content_id.encode()

    @property
    def flags(self) -> tuple[str, ...]:
        flagged = self.near_duplicate is not None and self.near_duplicate.flagged
        return ("near_duplicate",) if flagged else ()

    def to_json(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "content_id": self.content_id,
                "content_type": self.content_type, "event_time_ms": self.event_time_ms,
                "near_duplicate": (self.near_duplicate.to_json()
                                   if self.near_duplicate is not None else None),
                "cluster": self.cluster or self.content_id,
                "related": [item.to_json() for item in self.related],
                "flags": list(self.flags), "index": self.index}


@dataclass(frozen=True, slots=True)
class ClusterRecord:
    """A ``content.clusters.v1`` value, keyed by its aggregation group (``content_type=<type>``):
    one per indexed item, what the ``campaigns`` window stage folds. `source` is the
    ``content.embeddings.v1`` record it came from (the window stage's once-per-offset key)."""

    group: str
    event_id: str
    content_id: str
    content_type: str
    event_time_ms: int
    cluster: str
    near_duplicate_of: str | None   # the earlier item when it is a flagged near-duplicate
    source: Position

    @property
    def key(self) -> bytes:
        return self.group.encode()

    def to_json(self) -> dict[str, Any]:
        return {"group": self.group, "event_id": self.event_id, "content_id": self.content_id,
                "content_type": self.content_type, "event_time_ms": self.event_time_ms,
                "cluster": self.cluster, "near_duplicate_of": self.near_duplicate_of,
                "source": position_json(self.source)}
