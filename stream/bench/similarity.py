"""`signals bench --similarity`: the embedded ANN libraries measured on this machine, as JSON.

Which in-process library backs the similarity index was decided with this function. Each
candidate is built with the product's graph parameters (`stream.similarity.ann`: HNSW, M = 16
links, 128 candidates while building and while searching), fed the way the index stage feeds it
(inserts in batches of `INSERT_BATCH`, like a micro-batch) and queried the way a signal queries it
(one vector at a time, k = 10, one thread: the worker has two shared cores).
Measured per data set and library:

* recall@10 against the exact answer (numpy brute force over the same float32 vectors);
* inserts/s and queries/s;
* memory: the library's own size of the index, and the process's resident-set growth while
  building, each divided by the vector count and extrapolated to one million vectors;
* whether it can delete and replace a vector (the index must, for ``content.deleted`` and
  updates).

Data sets: ``random`` (unit vectors uniform on the sphere: no structure, the hardest case for a
graph index) and ``real-ish`` (real encoder embeddings of the shared corpora's texts, each the
centre of a few noisy copies, so the set has the clusters and near-duplicates real content has).
"""

from __future__ import annotations

import contextlib
import os
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stream.similarity.ann import CONNECTIVITY, EXPANSION_ADD, EXPANSION_SEARCH

INSERT_BATCH = 64
K = 10


@dataclass(frozen=True, slots=True)
class Candidate:
    name: str
    library: str
    scalar: str
    can_delete: bool
    build: Callable[[int, int], Any]                      # (dim, capacity) -> engine
    add: Callable[[Any, np.ndarray, np.ndarray], None]    # (engine, keys, vectors)
    search: Callable[[Any, np.ndarray, int], np.ndarray]  # (engine, vector, k) -> keys
    size_bytes: Callable[[Any], int]


def candidates() -> list[Candidate]:
    """Every library that imports here (a missing one is left out of the result)."""
    found: list[Candidate] = []
    for library in (_usearch_candidates, _hnswlib_candidates, _faiss_candidates):
        with contextlib.suppress(ImportError):
            found.extend(library())
    return found


def _usearch_candidates() -> list[Candidate]:
    from usearch.index import Index

    import stream.similarity.ann  # noqa: F401 -- loads onnxruntime first (see its docstring)

    def usearch_build(dtype: str) -> Callable[[int, int], Any]:
        return lambda dim, _capacity: Index(
            ndim=dim, metric="ip", dtype=dtype, connectivity=CONNECTIVITY,
            expansion_add=EXPANSION_ADD, expansion_search=EXPANSION_SEARCH)

    return [Candidate(
        f"usearch-{dtype}", "usearch", dtype, True, usearch_build(dtype),
        lambda e, keys, vectors: e.add(keys, vectors, threads=1),
        lambda e, vector, k: np.asarray(e.search(vector, k, threads=1).keys),
        lambda e: int(e.memory_usage)) for dtype in ("f32", "f16", "i8")]


def _hnswlib_candidates() -> list[Candidate]:
    import hnswlib

    def hnsw_build(dim: int, capacity: int) -> Any:
        engine = hnswlib.Index(space="ip", dim=dim)
        engine.init_index(max_elements=capacity, M=CONNECTIVITY,
                          ef_construction=EXPANSION_ADD, allow_replace_deleted=True)
        engine.set_ef(EXPANSION_SEARCH)
        engine.set_num_threads(1)
        return engine

    def hnsw_search(engine: Any, vector: np.ndarray, k: int) -> np.ndarray:
        labels, _ = engine.knn_query(vector, k=k, num_threads=1)
        return np.asarray(labels[0])

    return [Candidate(
        "hnswlib-f32", "hnswlib", "f32", True, hnsw_build,
        lambda e, keys, vectors: e.add_items(vectors, keys, num_threads=1),
        hnsw_search, _hnswlib_size)]


def _faiss_candidates() -> list[Candidate]:
    import faiss

    def faiss_build(kind: str) -> Callable[[int, int], Any]:
        def build(dim: int, _capacity: int) -> Any:
            faiss.omp_set_num_threads(1)
            inner: Any
            if kind == "f32":
                inner = faiss.IndexHNSWFlat(dim, CONNECTIVITY, faiss.METRIC_INNER_PRODUCT)
            else:
                qtype: Any = faiss.ScalarQuantizer.QT_8bit
                inner = faiss.IndexHNSWSQ(dim, qtype, CONNECTIVITY,
                                          faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = EXPANSION_ADD
            inner.hnsw.efSearch = EXPANSION_SEARCH
            return [inner, None]   # keys are positions; faiss HNSW cannot remove
        return build

    def faiss_add(engine: Any, keys: np.ndarray, vectors: np.ndarray) -> None:
        index = engine[0]
        if not isinstance(index, faiss.IndexHNSWFlat) and not index.is_trained:
            index.train(vectors)
        index.add(vectors)

    def faiss_search(engine: Any, vector: np.ndarray, k: int) -> np.ndarray:
        _, labels = engine[0].search(vector.reshape(1, -1), k)
        return np.asarray(labels[0])

    return [Candidate(
        f"faiss-hnsw-{kind}", "faiss-cpu", kind, False, faiss_build(kind), faiss_add,
        faiss_search, lambda e: len(faiss.serialize_index(e[0]))) for kind in ("f32", "sq8")]


def _hnswlib_size(engine: Any) -> int:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "index.bin"
        engine.save_index(str(path))
        return path.stat().st_size


def random_vectors(count: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return unit(rng.standard_normal((count, dim), dtype=np.float32))


def realish_vectors(real: np.ndarray, count: int, seed: int, noise: float = 0.5) -> np.ndarray:
    """`count` vectors shaped like real embeddings: the real ones, then blends of two random real
    ones (weights 0.5-1) plus noise, so the set fills the space between real items the way a
    large catalogue does instead of piling copies on a few points."""
    rng = np.random.default_rng(seed)
    extra = count - len(real)
    if extra <= 0:
        return unit(real[:count])
    first, second = real[rng.integers(0, len(real), extra)], real[rng.integers(0, len(real), extra)]
    weight = rng.uniform(0.5, 1.0, (extra, 1)).astype(np.float32)
    jitter = rng.standard_normal((extra, real.shape[1]), dtype=np.float32)
    jitter *= noise / np.sqrt(real.shape[1])
    return unit(np.concatenate([real, weight * first + (1 - weight) * second + jitter]))


REAL_TEXT_FILES = ("news_topic_ag.jsonl", "podcast_category_spotify.jsonl",
                   "podcast_explicit.jsonl", "sentiment_tweeteval.jsonl", "spam_sms.jsonl")


def real_texts(folder: Path | None, per_file: int, fallback: Sequence[Path]) -> list[str]:
    """Texts to encode: the first `per_file` rows of each shared corpus in `folder` (read in
    place, never copied), else the texts of the `fallback` event files."""
    import orjson

    texts: list[str] = []
    files = [folder / name for name in REAL_TEXT_FILES] if folder else []
    for path in [f for f in files if f.is_file()] or list(fallback):
        with path.open("rb") as handle:
            for number, line in enumerate(handle):
                if number >= per_file:
                    break
                try:
                    data = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                text = ". ".join(str(data[f]) for f in ("title", "description", "text")
                                 if isinstance(data, dict) and data.get(f))
                if text:
                    texts.append(text)
    return texts


def encode(texts: Sequence[str], encoder: Any, batch: int = 32) -> np.ndarray:
    return np.concatenate([encoder.encode(list(texts[i:i + batch]))
                           for i in range(0, len(texts), batch)])


def unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.asarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


def exact_top_k(base: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """The true k nearest (largest inner product) of each query, in chunks to bound memory."""
    out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), 256):
        scores = queries[start:start + 256] @ base.T
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        order = np.take_along_axis(scores, top, axis=1).argsort(axis=1)[:, ::-1]
        out[start:start + 256] = np.take_along_axis(top, order, axis=1)
    return out


def measure(candidate: Candidate, base: np.ndarray, queries: np.ndarray,
            truth: np.ndarray) -> dict[str, Any]:
    keys = np.arange(len(base), dtype=np.uint64)
    rss_before = current_rss_bytes()
    engine = candidate.build(base.shape[1], len(base))
    started = time.perf_counter()
    for start in range(0, len(base), INSERT_BATCH):
        candidate.add(engine, keys[start:start + INSERT_BATCH], base[start:start + INSERT_BATCH])
    insert_s = time.perf_counter() - started
    rss_growth = max(current_rss_bytes() - rss_before, 0)
    found = np.empty_like(truth)
    started = time.perf_counter()
    for row, vector in enumerate(queries):
        got = candidate.search(engine, vector, truth.shape[1])
        found[row, : len(got)] = got[: truth.shape[1]]
    query_s = time.perf_counter() - started
    size = candidate.size_bytes(engine)
    recall = float(np.mean([len(set(f.tolist()) & set(t.tolist())) / truth.shape[1]
                            for f, t in zip(found, truth, strict=True)]))
    del engine
    return {
        "name": candidate.name, "library": candidate.library, "scalar": candidate.scalar,
        "can_delete_and_replace": candidate.can_delete,
        f"recall_at_{truth.shape[1]}": round(recall, 4),
        "inserts_per_s": round(len(base) / insert_s, 1),
        "queries_per_s": round(len(queries) / query_s, 1),
        "index_bytes_per_vector": round(size / len(base), 1),
        "index_mib_per_million": round(size / len(base) * 1e6 / 2**20, 1),
        "rss_growth_mib_per_million": round(rss_growth / len(base) * 1e6 / 2**20, 1),
    }


def measure_exact(base: np.ndarray, queries: np.ndarray) -> dict[str, Any]:
    started = time.perf_counter()
    for vector in queries:
        scores = base @ vector
        np.argpartition(-scores, K)[:K]
    query_s = time.perf_counter() - started
    return {"name": "exact-numpy-f32", "library": "numpy", "scalar": "f32",
            "can_delete_and_replace": True, f"recall_at_{K}": 1.0,
            "queries_per_s": round(len(queries) / query_s, 1),
            "index_bytes_per_vector": base.shape[1] * 4,
            "index_mib_per_million": round(base.shape[1] * 4 * 1e6 / 2**20, 1)}


def run_similarity_bench(datasets: dict[str, np.ndarray], queries: int, seed: int,
                         only: Sequence[str] = ()) -> dict[str, Any]:
    """Measure every candidate on every data set; the query vectors are held out of the base."""
    rng = np.random.default_rng(seed)
    result: dict[str, Any] = {
        "parameters": {"connectivity": CONNECTIVITY, "expansion_add": EXPANSION_ADD,
                       "expansion_search": EXPANSION_SEARCH, "k": K,
                       "insert_batch": INSERT_BATCH, "threads": 1, "queries": queries,
                       "seed": seed},
        "environment": {"cpus_usable": len(os.sched_getaffinity(0)),
                        "python": platform.python_version(), "libraries": library_versions()},
        "datasets": {}}
    for name, vectors in datasets.items():
        order = rng.permutation(len(vectors))
        held, base = vectors[order[:queries]], vectors[order[queries:]]
        truth = exact_top_k(base, held, K)
        runs = [measure_exact(base, held)]
        runs += [measure(c, base, held, truth) for c in candidates()
                 if not only or c.name in only]
        result["datasets"][name] = {"vectors": len(base), "dim": int(base.shape[1]),
                                    "runs": runs}
    return result


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str] = {}
    for package in ("usearch", "hnswlib", "faiss-cpu", "numpy"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            continue
    return out


def current_rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
