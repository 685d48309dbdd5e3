"""The rows a head is trained on: dataset files seen through a label mapping (`Source`), split by
the one rule of `splits`, embedded by `embed.EmbeddingCache`, concatenated into a `Pool`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models_onnx.training.common import Array, Row
from models_onnx.training.embed import VARIANTS, EmbeddingCache, load_rows
from models_onnx.training.splits import assign_split, cap_rows
from stream.models.onnx_session import sha256_of


@dataclass(frozen=True)
class Source:
    """One dataset file as seen by one head: original label -> head label (absent = dropped)."""

    file: str
    mapping: Mapping[str, str]
    variant: str = "default"
    cap_per_label: int | None = None  # at most this many training rows per head label


@dataclass
class Pool:
    """The rows of the sources one head (or one safety label) is trained on, concatenated."""

    x: Array  # float32 [n, 384]
    y: Array  # int label index
    is_val: Array  # held-back validation rows
    fold: Array  # 0..N_FOLDS-1 on training rows, -1 on validation rows
    source: Array  # index into `sources`
    target: Array  # rows that are scored (the target corpus / all corpora of a label)
    texts: list[str]
    sources: list[Source]
    labels: list[str]

    def weights(self) -> Array:
        """Per-row weights giving every scored source the same total weight."""
        w = np.zeros(len(self.y))
        for s in np.unique(self.source[self.target]):
            rows = self.target & (self.source == s)
            w[rows] = 1.0 / rows.sum()
        scaled: Array = w * self.target.sum() / max(w.sum(), 1e-12)
        return scaled


class Corpora:
    """Dataset files, their splits and their cached embeddings."""

    def __init__(self, data_dir: Path, cache: EmbeddingCache) -> None:
        self.data_dir = data_dir
        self.cache = cache
        self._rows: dict[str, list[Row]] = {}

    def rows(self, name: str) -> list[Row]:
        if name not in self._rows:
            self._rows[name] = load_rows(self.data_dir / name)
        return self._rows[name]

    def hashes(self, names: Sequence[str]) -> dict[str, str]:
        return {n: sha256_of(self.data_dir / n) for n in sorted(set(names))}

    def part(self, k: int, src: Source, labels: list[str], scored: bool) -> dict[str, Any]:
        """The kept rows of one source: mapped training rows (capped) and mapped val rows."""
        rows = self.rows(src.file)
        is_val, fold = assign_split(rows)
        mapped = [src.mapping.get(str(r["label"]), "") for r in rows]
        labelled = np.array([m != "" for m in mapped])
        keep = cap_rows(rows, labelled & ~is_val, mapped, src.cap_per_label)
        keep |= labelled & is_val
        x = self.cache.get(self.data_dir / src.file, src.variant)
        idx = np.flatnonzero(keep)
        return {"x": x[idx], "y": np.array([labels.index(mapped[i]) for i in idx]),
                "is_val": is_val[idx], "fold": fold[idx],
                "source": np.full(len(idx), k), "target": np.full(len(idx), scored),
                "texts": [VARIANTS[src.variant](rows[i]) for i in idx]}

    def pool(self, sources: Sequence[Source], labels: list[str],
             scored: Sequence[bool]) -> Pool:
        """Concatenate the mapped rows of `sources`; `scored[k]` marks scored sources."""
        parts = [self.part(k, src, labels, scored[k]) for k, src in enumerate(sources)]
        cat = {key: np.concatenate([p[key] for p in parts]) for key in parts[0] if key != "texts"}
        texts = [t for p in parts for t in p["texts"]]
        return Pool(**cat, texts=texts, sources=list(sources), labels=labels)
