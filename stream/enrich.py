"""Enrichment: run every model of the suite over one micro-batch of validated events.

The encoder runs once per batch (one ONNX call per length bucket); classification heads that read
the embedding run once per batch on the encoder's output. The result per event is an `Enrichment`:
the embedding and ``{task: {label, score, model}}`` for each model that ran.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stream.encoder import TextEncoder
from stream.manifest import Manifest
from stream.records import ContentEvent
from stream.settings import Settings

EMBEDDING_TASK = "embedding"


@dataclass(frozen=True, slots=True)
class Enrichment:
    embedding: np.ndarray | None
    signals: dict[str, dict[str, Any]] = field(default_factory=dict)


class Enricher:
    """Loads (and verifies) the models named by the manifest once; `enrich` is called per batch."""

    def __init__(self, manifest: Manifest, settings: Settings,
                 versions: Mapping[str, str] | None = None) -> None:
        versions = versions or {}
        self.encoder = TextEncoder(
            manifest.resolve(EMBEDDING_TASK, versions.get(EMBEDDING_TASK)),
            threads=settings.model_threads, bucket_size=settings.encoder_bucket_size)

    @property
    def versions(self) -> dict[str, str]:
        """Task → model version of every model this enricher runs."""
        return {EMBEDDING_TASK: self.encoder.version}

    def enrich(self, events: Sequence[ContentEvent]) -> list[Enrichment]:
        with_text = [i for i, e in enumerate(events) if e.has_text]
        embeddings = self.encoder.encode([events[i].model_text for i in with_text])
        result = [Enrichment(embedding=None) for _ in events]
        for row, i in enumerate(with_text):
            result[i] = Enrichment(embedding=embeddings[row])
        return result
