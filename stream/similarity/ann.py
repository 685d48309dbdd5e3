"""`UsearchIndex`: the embedded default, an HNSW graph (usearch) over half-precision vectors.

Chosen by measurement (`signals bench --similarity`, README "Similar content"): on real-ish
vectors usearch with f16 storage kept recall@10 at 0.999 of exact search with about half the
memory of the float32 graphs (hnswlib, faiss), and — unlike faiss's HNSW — it removes and
replaces vectors, which ``content.deleted`` and updates need. int8 storage was cheaper still but
lost 15 % recall: unit 384-d vectors have components near ±0.05, too few int8 levels.

usearch keys are integers: each content id gets the next key, kept in ``_keys``; a deleted id's
key is retired. A filtered query over-fetches and widens until it has `k` accepted hits or has
seen the whole index, so a selective filter costs more, never returns wrong items.
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import numpy as np

# ONNX Runtime must be loaded before usearch: the other order (usearch 2.26, onnxruntime 1.2x)
# crashes the process with a segmentation fault inside onnxruntime's extension module, in
# any process that later loads the models (the worker, `signals similar`). Kept here so no
# import order elsewhere can trigger it; tests/unit/test_similarity_index.py checks it.
import onnxruntime  # noqa: F401
from usearch.index import Index

from stream.similarity.index import DIM, Filter, Hit, ItemInfo, as_vector, top_hits

CONNECTIVITY = 16
EXPANSION_ADD = 128
EXPANSION_SEARCH = 128   # 64 gave recall@10 0.92 on dense clusters (tests), 128 0.98
OVERFETCH = 4


class UsearchIndex:
    kind = "usearch"

    def __init__(self, dim: int = DIM, dtype: str = "f16") -> None:
        self.dim = dim
        self.dtype = dtype
        self._index = self._new()
        self._keys: dict[str, int] = {}
        self._ids: dict[int, str] = {}
        self._infos: dict[str, ItemInfo] = {}
        self._next_key = 1

    def _new(self) -> Index:
        return Index(ndim=self.dim, metric="ip", dtype=self.dtype, connectivity=CONNECTIVITY,
                     expansion_add=EXPANSION_ADD, expansion_search=EXPANSION_SEARCH)

    def __len__(self) -> int:
        return len(self._keys)

    def upsert(self, content_id: str, vector: np.ndarray, info: ItemInfo) -> None:
        old = self._keys.get(content_id)
        if old is not None:
            self._index.remove(old)
            del self._ids[old]
        key = self._next_key
        self._next_key += 1
        self._index.add(key, as_vector(vector, self.dim), threads=1)
        self._keys[content_id], self._ids[key] = key, content_id
        self._infos[content_id] = info

    def delete(self, content_id: str) -> bool:
        key = self._keys.pop(content_id, None)
        if key is None:
            return False
        self._index.remove(key)
        del self._ids[key]
        del self._infos[content_id]
        return True

    def get(self, content_id: str) -> np.ndarray | None:
        key = self._keys.get(content_id)
        if key is None:
            return None
        return np.asarray(self._index.get(key), dtype=np.float32)

    def query(self, vector: np.ndarray, k: int, where: Filter | None = None) -> list[Hit]:
        if k <= 0 or not self._keys:
            return []
        query = as_vector(vector, self.dim)
        fetch = k if where is None else k * OVERFETCH + len(where.exclude)
        while True:
            fetch = min(fetch, len(self._keys))
            matches = self._index.search(query, fetch, threads=1)
            scored = []
            for key, distance in zip(matches.keys, matches.distances, strict=True):
                content_id = self._ids.get(int(key))
                if content_id is None:
                    continue
                info = self._infos[content_id]
                if where is None or where.accepts(content_id, info):
                    scored.append((content_id, 1.0 - float(distance), info))
            if len(scored) >= k or fetch >= len(self._keys):
                return top_hits(scored, k)
            fetch *= OVERFETCH

    def persist(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self._index.save(str(path / "graph.usearch"))
        (path / "items.json").write_text(json.dumps({
            "kind": self.kind, "dim": self.dim, "dtype": self.dtype, "next_key": self._next_key,
            "items": [[cid, key, self._infos[cid].to_json()] for cid, key in self._keys.items()]}))

    def load(self, path: Path) -> None:
        meta = json.loads((path / "items.json").read_text())
        self._index = self._new()
        self._index.load(str(path / "graph.usearch"))
        self._keys = {cid: int(key) for cid, key, _ in meta["items"]}
        self._ids = {key: cid for cid, key in self._keys.items()}
        self._infos = {cid: ItemInfo.from_json(info) for cid, _, info in meta["items"]}
        self._next_key = int(meta["next_key"])

    def batch(self) -> AbstractContextManager[object]:
        return nullcontext()   # in memory: nothing to group

    def clear(self) -> None:
        self._index = self._new()
        self._keys, self._ids, self._infos = {}, {}, {}

    def close(self) -> None:
        return None
