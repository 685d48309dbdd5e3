"""`ExactIndex`: brute force over a float32 matrix, the reference every other kind is held to.

Every query scores all items (one matrix-vector product), so it is exact and slow at scale
(about 55-75 queries/s over 50,000 vectors on the development machine, README "Similar content");
tests and the calibration use it as ground truth, the product does not.
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import numpy as np

from stream.similarity.index import DIM, Filter, Hit, ItemInfo, as_vector, top_hits


class ExactIndex:
    kind = "exact"

    def __init__(self, dim: int = DIM) -> None:
        self.dim = dim
        self._vectors = np.zeros((0, dim), dtype=np.float32)
        self._ids: list[str] = []
        self._infos: list[ItemInfo] = []
        self._rows: dict[str, int] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def upsert(self, content_id: str, vector: np.ndarray, info: ItemInfo) -> None:
        row = self._rows.get(content_id)
        if row is None:
            row = self._count
            if row == len(self._vectors):
                grown = np.zeros((max(16, 2 * row), self.dim), dtype=np.float32)
                grown[:row] = self._vectors[:row]
                self._vectors = grown
            self._ids.append(content_id)
            self._infos.append(info)
            self._rows[content_id] = row
            self._count += 1
        self._vectors[row] = as_vector(vector, self.dim)
        self._infos[row] = info

    def delete(self, content_id: str) -> bool:
        """Remove by moving the last row into the hole (rows are not stable ids)."""
        row = self._rows.pop(content_id, None)
        if row is None:
            return False
        last = self._count - 1
        if row != last:
            moved = self._ids[last]
            self._vectors[row] = self._vectors[last]
            self._ids[row], self._infos[row] = moved, self._infos[last]
            self._rows[moved] = row
        self._ids.pop()
        self._infos.pop()
        self._count -= 1
        return True

    def get(self, content_id: str) -> np.ndarray | None:
        row = self._rows.get(content_id)
        return None if row is None else self._vectors[row].copy()

    def query(self, vector: np.ndarray, k: int, where: Filter | None = None) -> list[Hit]:
        if k <= 0 or self._count == 0:
            return []
        scores = self._vectors[: self._count] @ as_vector(vector, self.dim)
        rows = [r for r in range(self._count)
                if where is None or where.accepts(self._ids[r], self._infos[r])]
        return top_hits(((self._ids[r], float(scores[r]), self._infos[r]) for r in rows), k)

    def persist(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        np.save(path / "vectors.npy", self._vectors[: self._count])
        (path / "items.json").write_text(json.dumps(
            {"kind": self.kind, "dim": self.dim,
             "items": [[cid, info.to_json()] for cid, info in zip(self._ids, self._infos,
                                                                   strict=True)]}))

    def load(self, path: Path) -> None:
        items = json.loads((path / "items.json").read_text())["items"]
        vectors = np.load(path / "vectors.npy")
        self.__init__(self.dim)  # type: ignore[misc]
        for (cid, info), vector in zip(items, vectors, strict=True):
            self.upsert(cid, vector, ItemInfo.from_json(info))

    def batch(self) -> AbstractContextManager[object]:
        return nullcontext()   # in memory: nothing to group

    def clear(self) -> None:
        self.__init__(self.dim)  # type: ignore[misc]

    def close(self) -> None:
        return None
