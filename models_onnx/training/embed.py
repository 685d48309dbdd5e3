"""Embed the labelled corpora once with the runtime encoder and cache the vectors in /tmp.

The vectors come from `stream.models.encoder.TextEncoder` on the manifest's active ``embedding``
model (or the version given with ``--encoder``), i.e. exactly what the worker computes. The text of
a row is built like `stream.core.records.ContentEvent.model_text`: the non-empty stripped ``title``
and ``description`` joined by ". " where the row has either, else ``text`` (the encoder truncates
to 128 tokens). Variants add other fields (``title_publisher`` puts the iTunes publisher where a
description would go).

Cache layout (never inside the repository):
``<cache>/<encoder version>/<file stem>[.<variant>].npy`` holds a float32 [rows, 384] array in
file order; the ``.json`` beside it records the dataset file's sha256, the encoder version and
sha256, the variant and the row count. A cache whose record does not match the current file and
encoder is recomputed.

Usage (from the repository root):
    .venv/bin/python -m models_onnx.training.embed [--data-dir DIR] [FILE ...]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from models_onnx.training.common import DATA_DIR, Array, Row
from stream.models.encoder import TextEncoder
from stream.models.manifest import load_manifest
from stream.models.onnx_session import sha256_of as sha256_file
from stream.settings import Settings

CACHE_DIR = Path("/tmp/cs-emb")
LINGUA_FILE = "language_lingua.jsonl"
LINGUA_LANGS = ("en", "de", "fr", "es", "nl", "it", "pt", "tl")
LINGUA_PER_LANG = 150
CHUNK = 512


def join_fields(*parts: str) -> str:
    """Non-empty stripped parts joined by '. ' (ContentEvent.model_text)."""
    return ". ".join(p.strip() for p in parts if p and p.strip())


def model_text(row: Row) -> str:
    """What the worker would read for this row: title. description, else text."""
    if row.get("title") or row.get("description"):
        return join_fields(row.get("title", ""), row.get("description", ""))
    return str(row["text"])


def title_publisher_text(row: Row) -> str:
    """Title with the publisher in the description slot (iTunes rows have no description)."""
    return join_fields(row.get("title") or row["text"], row.get("publisher", ""))


VARIANTS: dict[str, Callable[[Row], str]] = {
    "default": model_text,
    "title_publisher": title_publisher_text,
}


def load_rows(path: Path) -> list[Row]:
    """All JSON lines of a dataset file, in file order."""
    with path.open("rb") as handle:
        return [orjson.loads(line) for line in handle if line.strip()]


def lingua_sample(rows: Sequence[Row]) -> list[int]:
    """Indices of a fixed sample of language_lingua rows: the first LINGUA_PER_LANG rows per
    language in LINGUA_LANGS, ordered by sha256 of the id (for non-English probes)."""
    keyed = sorted((hashlib.sha256(str(r["id"]).encode()).hexdigest(), i)
                   for i, r in enumerate(rows) if r["label"] in LINGUA_LANGS)
    taken: dict[str, int] = {}
    chosen = []
    for _, i in keyed:
        label = rows[i]["label"]
        if taken.get(label, 0) < LINGUA_PER_LANG:
            taken[label] = taken.get(label, 0) + 1
            chosen.append(i)
    return sorted(chosen)


class EmbeddingCache:
    """Row-aligned embeddings of dataset files, computed on first use and cached on disk."""

    def __init__(self, cache_dir: Path = CACHE_DIR, threads: int = 2,
                 encoder: str | None = None) -> None:
        self.spec = load_manifest(Settings().manifest_path).resolve("embedding", encoder)
        self.cache_dir = cache_dir / self.spec.version
        self.threads = threads
        self._encoder: TextEncoder | None = None

    @property
    def encoder(self) -> TextEncoder:
        if self._encoder is None:
            self._encoder = TextEncoder(self.spec, threads=self.threads, bucket_size=32)
        return self._encoder

    def record(self, path: Path, variant: str, n_rows: int) -> dict[str, Any]:
        """The identity a cached array must match."""
        return {"file": path.name, "sha256": sha256_file(path), "variant": variant,
                "rows": n_rows, "encoder_version": self.spec.version,
                "encoder_sha256": self.spec.sha256,
                "text_rule": (VARIANTS[variant].__doc__ or "").strip()}

    def paths(self, path: Path, variant: str) -> tuple[Path, Path]:
        stem = path.stem if variant == "default" else f"{path.stem}.{variant}"
        return self.cache_dir / f"{stem}.npy", self.cache_dir / f"{stem}.json"

    def get(self, path: Path, variant: str = "default") -> Array:
        """float32 [rows, 384] for every row of `path`, in file order."""
        rows = load_rows(path)
        npy, meta = self.paths(path, variant)
        want = self.record(path, variant, len(rows))
        return self.cached(npy, meta, want, lambda: [VARIANTS[variant](r) for r in rows])

    def cached(self, npy: Path, meta: Path, want: dict[str, Any],
               texts: Callable[[], list[str]]) -> Array:
        """The array at `npy` if its record equals `want`, else encode `texts()` and store."""
        if npy.is_file() and meta.is_file() and json.loads(meta.read_text()) == want:
            stored: Array = np.load(npy)
            return stored
        vectors = self.encode(texts(), label=npy.name)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        np.save(npy, vectors)
        meta.write_text(json.dumps(want, indent=1) + "\n")
        return vectors

    def encode(self, texts: Sequence[str], label: str) -> Array:
        """Encode in chunks, printing progress."""
        started = time.monotonic()
        out = []
        for start in range(0, len(texts), CHUNK):
            out.append(self.encoder.encode(texts[start : start + CHUNK]))
            done = min(start + CHUNK, len(texts))
            rate = done / max(time.monotonic() - started, 1e-9)
            print(f"  {label}: {done}/{len(texts)} ({rate:.0f}/s)", flush=True)
        return np.concatenate(out) if out else np.zeros((0, self.encoder.dim), np.float32)

    def lingua(self, data_dir: Path) -> tuple[list[Row], Array]:
        """The fixed multilingual probe sample and its embeddings (variant 'sample')."""
        path = data_dir / LINGUA_FILE
        rows = load_rows(path)
        sample = [rows[i] for i in lingua_sample(rows)]
        npy = self.cache_dir / "language_lingua.sample.npy"
        want = dict(self.record(path, "default", len(sample)), variant="sample",
                    sample=f"{LINGUA_PER_LANG} per language of {list(LINGUA_LANGS)}")
        vectors = self.cached(npy, npy.with_suffix(".json"), want,
                              lambda: [r["text"] for r in sample])
        return sample, vectors


# Files the heads use, with the text variants each needs.
CORPORA: dict[str, tuple[str, ...]] = {
    "podcast_genre_itunes.jsonl": ("default", "title_publisher"),
    "podcast_category_spotify.jsonl": ("default",),
    "news_topic_ag.jsonl": ("default",),
    "news_topic_bbc.jsonl": ("default",),
    "podcast_explicit.jsonl": ("default",),
    "offensive_olid.jsonl": ("default",),
    "offensive_tweeteval.jsonl": ("default",),
    "toxicity_davidson.jsonl": ("default",),
    "hate_tweeteval.jsonl": ("default",),
    "sentiment_tweeteval.jsonl": ("default",),
    "sentiment_uci.jsonl": ("default",),
    "sentiment_sst2.jsonl": ("default",),
    "spam_sms.jsonl": ("default",),
    "emotion_tweeteval.jsonl": ("default",),
}


def main() -> int:
    """Embed every corpus the heads use (or the named ones) plus the lingua probe sample."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--cache-dir", type=Path, default=CACHE_DIR)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--encoder", help="embedding model version (default: the active one)")
    parser.add_argument("files", nargs="*", help="file names (default: all the heads use)")
    args = parser.parse_args()
    cache = EmbeddingCache(args.cache_dir, threads=args.threads, encoder=args.encoder)
    for name in args.files or list(CORPORA):
        for variant in CORPORA.get(name, ("default",)):
            started = time.monotonic()
            shape = cache.get(args.data_dir / name, variant).shape
            print(f"{name} [{variant}]: {shape} in {time.monotonic() - started:.0f}s", flush=True)
    if not args.files:
        _, vectors = cache.lingua(args.data_dir)
        print(f"{LINGUA_FILE} sample: {vectors.shape}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
