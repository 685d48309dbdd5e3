"""The index contract: what every similarity index (embedded or a server) offers.

An index maps a ``content_id`` to one unit vector and a little metadata (`ItemInfo`). `upsert`
replaces an existing item (an update), `delete` removes it (``content.deleted``), `query` returns
the ``k`` most similar items by cosine — for unit vectors the inner product — best first, as
`Hit`s, restricted by an optional `Filter`. A `Filter` is plain data, not a callback, so a server
can evaluate it where the vectors are (SQL ``WHERE`` in pgvector) instead of in Python.
`clear` empties it (an embedded index before a rebuild); `persist`/`load` write and read a
snapshot; a server index is durable by itself and treats them as
no-ops. The embedded implementations are `stream.similarity.exact.ExactIndex` (the reference) and
`stream.similarity.ann.UsearchIndex` (the default); `stream.similarity.pgvector.PgVectorIndex` is
the server one. `stream.similarity.kinds` is the registry that picks one from the settings.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

DIM = 384


@dataclass(frozen=True, slots=True)
class ItemInfo:
    """What the index keeps beside each vector (what a filter and a signal need).

    `cluster` is the item's near-duplicate cluster (`stream.similarity.signals.cluster_of`): the
    content id of the earliest item of its chain of copies; empty means the item's own id."""

    content_type: str
    event_time_ms: int
    event_id: str = ""
    creator_id: str | None = None
    show_id: str | None = None
    cluster: str = ""

    def cluster_of(self, content_id: str) -> str:
        """The cluster of the item `content_id` that this info describes."""
        return self.cluster or content_id

    def to_json(self) -> dict[str, Any]:
        return {"content_type": self.content_type, "event_time_ms": self.event_time_ms,
                "event_id": self.event_id, "creator_id": self.creator_id,
                "show_id": self.show_id, "cluster": self.cluster}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ItemInfo:
        return cls(content_type=data["content_type"], event_time_ms=int(data["event_time_ms"]),
                   event_id=data.get("event_id", ""), creator_id=data.get("creator_id"),
                   show_id=data.get("show_id"), cluster=data.get("cluster", ""))


@dataclass(frozen=True, slots=True)
class Filter:
    """Which items a query may return. Every condition given must hold.

    * `content_types`: only these content types;
    * `exclude`: never these content ids (the query item itself);
    * `not_after_ms`: only items whose event time is not later than this (near-duplicates point
      to the earlier copy; copies posted in the same millisecond see each other)."""

    content_types: frozenset[str] | None = None
    exclude: frozenset[str] = field(default_factory=frozenset)
    not_after_ms: int | None = None

    def accepts(self, content_id: str, info: ItemInfo) -> bool:
        if content_id in self.exclude:
            return False
        if self.content_types is not None and info.content_type not in self.content_types:
            return False
        return self.not_after_ms is None or info.event_time_ms <= self.not_after_ms


@dataclass(frozen=True, slots=True)
class Hit:
    content_id: str
    cosine: float
    info: ItemInfo


class VectorIndex(Protocol):
    """The interface of every index kind (see the module docstring)."""

    kind: str

    def upsert(self, content_id: str, vector: np.ndarray, info: ItemInfo) -> None: ...

    def delete(self, content_id: str) -> bool: ...

    def query(self, vector: np.ndarray, k: int, where: Filter | None = None) -> list[Hit]: ...

    def get(self, content_id: str) -> np.ndarray | None: ...

    def __len__(self) -> int: ...

    def persist(self, path: Path) -> None: ...

    def load(self, path: Path) -> None: ...

    def clear(self) -> None: ...

    def close(self) -> None: ...

    def batch(self) -> AbstractContextManager[object]:
        """The writes and queries of one micro-batch, together: one transaction on a database
        (its queries see the batch's own earlier upserts), nothing special in memory."""
        ...


def as_vector(vector: Any, dim: int = DIM) -> np.ndarray:
    """A float32 row of `dim`, normalised to unit length (a zero vector stays zero)."""
    out = np.asarray(vector, dtype=np.float32).reshape(-1)
    if out.shape[0] != dim:
        raise ValueError(f"vector has {out.shape[0]} dimensions, the index {dim}")
    norm = float(np.linalg.norm(out))
    return out / norm if norm > 0 else out


def top_hits(scored: Iterable[tuple[str, float, ItemInfo]], k: int) -> list[Hit]:
    """Best `k` by cosine, ties broken by content id so every kind orders alike."""
    ranked = sorted(scored, key=lambda item: (-item[1], item[0]))[:k]
    return [Hit(cid, round(float(cos), 6), info) for cid, cos, info in ranked]
