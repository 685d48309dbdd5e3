"""Enrichment: run every model of the suite over one micro-batch of validated events.

Per batch: the language model once on the texts, the encoder once (one ONNX call per length
bucket), then each classification head once on the embeddings. The result per event is an
`Enrichment`: the embedding and ``{task: {label, score, model, ...}}`` for each model that ran.

Language routing: the encoder and heads are English-only. They still run on every text (one call
per batch either way), but when the language model is confident the text is not English
(``NON_ENGLISH_CONFIDENCE``), their signals carry ``"reliable": false``, raise no flags, and the
topic does not enter the aggregation group (see `stream.rules`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stream.encoder import TextEncoder
from stream.manifest import Manifest
from stream.models import HeadModel, LanguageModel
from stream.records import ContentEvent
from stream.settings import Settings

EMBEDDING_TASK = "embedding"
LANGUAGE_TASK = "language"
NON_ENGLISH_CONFIDENCE = 0.6


@dataclass(frozen=True, slots=True)
class Enrichment:
    embedding: np.ndarray | None
    signals: dict[str, dict[str, Any]] = field(default_factory=dict)


class Enricher:
    """Loads (and verifies) the manifest's active models once; `enrich` is called per batch."""

    def __init__(self, manifest: Manifest, settings: Settings,
                 versions: Mapping[str, str] | None = None) -> None:
        versions = versions or {}
        threads = settings.model_threads
        self.encoder = TextEncoder(
            manifest.resolve(EMBEDDING_TASK, versions.get(EMBEDDING_TASK)),
            threads=threads, bucket_size=settings.encoder_bucket_size)
        self.language = (LanguageModel(manifest.resolve(LANGUAGE_TASK,
                                                        versions.get(LANGUAGE_TASK)),
                                       threads=threads)
                         if LANGUAGE_TASK in manifest.active else None)
        self.heads = [HeadModel(manifest.resolve(task, versions.get(task)), threads=threads)
                      for task in manifest.active
                      if manifest.resolve(task, versions.get(task)).kind == "head"]

    @property
    def versions(self) -> dict[str, str]:
        """Task → model version of every model this enricher runs."""
        result = {EMBEDDING_TASK: self.encoder.version}
        if self.language is not None:
            result[LANGUAGE_TASK] = self.language.version
        result |= {head.head.task: head.version for head in self.heads}
        return result

    def enrich(self, events: Sequence[ContentEvent]) -> list[Enrichment]:
        with_text = [i for i, e in enumerate(events) if e.has_text]
        texts = [events[i].model_text for i in with_text]
        embeddings = self.encoder.encode(texts)
        per_item: list[dict[str, dict[str, Any]]] = [{} for _ in texts]
        if self.language is not None:
            for signals, lang in zip(per_item, self.language.predict(texts), strict=True):
                signals[LANGUAGE_TASK] = lang
        for head in self.heads:
            for signals, signal in zip(per_item, head.predict(embeddings), strict=True):
                if head.head.english_only and not is_english(signals):
                    signal = {**signal, "reliable": False, "flagged": []}
                signals[head.head.task] = signal
        result = [Enrichment(embedding=None) for _ in events]
        for row, i in enumerate(with_text):
            result[i] = Enrichment(embedding=embeddings[row], signals=per_item[row])
        return result


def is_english(signals: Mapping[str, Mapping[str, Any]]) -> bool:
    """English unless the language model is confident it is something else."""
    language = signals.get(LANGUAGE_TASK)
    if language is None:
        return True
    return language["label"] == "en" or float(language["score"]) < NON_ENGLISH_CONFIDENCE
