"""Enrichment: run every model of the suite over one micro-batch of validated events.

Per batch: the language model once on the texts, the encoder once (one ONNX call per length
bucket), then each classification head once on the embeddings. The result per event is an
`Enrichment`: the embedding and ``{task: {label, score, model, ...}}`` for each model that ran.

Content-type routing: each head runs (once per batch) on the items of the content types it was
trained for (``applies_to`` in its manifest entry): topic on shows, episodes and audiobooks;
sentiment, emotion and spam on comments; safety on everything.

Language routing: the encoder and heads are English-only. They still run on every text (one call
per batch either way), but when the language model is confident the text is not English
(``NON_ENGLISH_CONFIDENCE``; ``SHORT_TEXT_CONFIDENCE`` for short texts), their signals carry
``"reliable": false``, raise no flags, and the topic does not enter the aggregation group.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import numpy as np

from stream.core.records import ContentEvent
from stream.errors import ConfigError
from stream.models.encoder import TextEncoder
from stream.models.heads import HeadModel, LanguageModel
from stream.models.manifest import Manifest
from stream.settings import Settings

EMBEDDING_TASK = "embedding"
LANGUAGE_TASK = "language"
NON_ENGLISH_CONFIDENCE = 0.6
# Short titles ("Pivot", "Joel Osteen Podcast") fool character n-grams: 14 % of English iTunes
# show titles came out non-English at 0.6 (MODELS.md). Below this length ask for near-certainty.
SHORT_TEXT_CHARS = 40
SHORT_TEXT_CONFIDENCE = 0.99

# Seconds each model spent on a batch, by (task, version): plain data the shell turns into metrics.
ModelTimings = MutableMapping[tuple[str, str], float]
R = TypeVar("R")


def timed(timings: ModelTimings | None, task: str, version: str, call: Callable[[], R]) -> R:
    """``call()``, adding its wall time to ``timings[(task, version)]`` when timings are kept."""
    if timings is None:
        return call()
    started = time.perf_counter()
    try:
        return call()
    finally:
        key = (task, version)
        timings[key] = timings.get(key, 0.0) + time.perf_counter() - started


@dataclass(frozen=True, slots=True)
class Enrichment:
    embedding: np.ndarray | None
    signals: dict[str, dict[str, Any]] = field(default_factory=dict)
    shadow: dict[str, dict[str, Any]] = field(default_factory=dict)  # challenger signals


class Enricher:
    """Loads (and verifies) the manifest's active models once; `enrich` is called per batch."""

    def __init__(self, manifest: Manifest, settings: Settings,
                 versions: Mapping[str, str] | None = None,
                 challengers: Mapping[str, str] | None = None) -> None:
        versions = versions or {}
        threads, spinning = settings.model_threads, settings.model_spinning
        self.encoder = TextEncoder(
            manifest.resolve(EMBEDDING_TASK, versions.get(EMBEDDING_TASK)),
            bucket_size=settings.encoder_bucket_size,
            threads=threads, spinning=spinning)
        self.language = (LanguageModel(manifest.resolve(LANGUAGE_TASK,
                                                        versions.get(LANGUAGE_TASK)),
                                       threads=threads, spinning=spinning)
                         if LANGUAGE_TASK in manifest.active else None)
        self.heads = [HeadModel(manifest.resolve(task, versions.get(task)), threads=threads,
                                spinning=spinning)
                      for task in manifest.active
                      if manifest.resolve(task, versions.get(task)).kind == "head"]
        self.challengers = [load_challenger(manifest, task, version, threads=threads,
                                            spinning=spinning)
                            for task, version in (challengers or {}).items()]

    @property
    def versions(self) -> dict[str, str]:
        """Task → model version of every model this enricher runs."""
        result = {EMBEDDING_TASK: self.encoder.version}
        if self.language is not None:
            result[LANGUAGE_TASK] = self.language.version
        result |= {head.task: head.version for head in self.heads}
        return result

    def enrich(self, events: Sequence[ContentEvent],
               timings: ModelTimings | None = None) -> list[Enrichment]:
        """Every model over the batch; with `timings`, each model's wall time is added to it."""
        with_text = [i for i, e in enumerate(events) if e.has_text]
        texts = [events[i].model_text for i in with_text]
        encoder = self.encoder
        embeddings = timed(timings, EMBEDDING_TASK, encoder.version, partial(encoder.encode, texts))
        per_item: list[dict[str, dict[str, Any]]] = [{} for _ in texts]
        language = self.language
        if language is not None:
            predicted = timed(timings, LANGUAGE_TASK, language.version,
                              partial(language.predict, texts))
            for signals, lang in zip(per_item, predicted, strict=True):
                signals[LANGUAGE_TASK] = lang
        types = [events[i].content_type for i in with_text]
        self._run_heads(per_item, embeddings, types, texts, timings)
        shadows = self._run_challengers(embeddings, types, texts, timings)
        result = [Enrichment(embedding=None) for _ in events]
        for row, i in enumerate(with_text):
            result[i] = Enrichment(embedding=embeddings[row], signals=per_item[row],
                                   shadow=shadows[row])
        return result

    def _run_heads(self, per_item: list[dict[str, dict[str, Any]]], embeddings: np.ndarray,
                   types: list[str], texts: list[str], timings: ModelTimings | None) -> None:
        """Each head once, on the rows of the content types it applies to."""
        english = [is_english(signals, len(text))
                   for signals, text in zip(per_item, texts, strict=True)]
        for head in self.heads:
            rows = [r for r, t in enumerate(types) if t in head.head.applies_to]
            predicted = timed(timings, head.task, head.version,
                              partial(head.predict, embeddings[rows]))
            for r, signal in zip(rows, predicted, strict=True):
                if head.head.english_only and not english[r]:
                    signal = {**signal, "reliable": False, "flagged": []}
                per_item[r][head.task] = signal

    def _run_challengers(self, embeddings: np.ndarray, types: list[str], texts: list[str],
                         timings: ModelTimings | None) -> list[dict[str, dict[str, Any]]]:
        shadows: list[dict[str, dict[str, Any]]] = [{} for _ in texts]
        for challenger in self.challengers:
            if isinstance(challenger, LanguageModel):
                rows = list(range(len(texts)))
                call: Callable[[], list[dict[str, Any]]] = partial(challenger.predict, texts)
            else:
                rows = [r for r, t in enumerate(types) if t in challenger.head.applies_to]
                call = partial(challenger.predict, embeddings[rows])
            predictions = timed(timings, challenger.task, challenger.version, call)
            for r, signal in zip(rows, predictions, strict=True):
                shadows[r][challenger.task] = signal
        return shadows


def load_challenger(manifest: Manifest, task: str, version: str, *,
                    threads: int, spinning: bool = False) -> HeadModel | LanguageModel:
    """A challenger runs beside the champion of its task on the same batch; only heads and the
    language model can be challenged (a new encoder would need heads trained on it)."""
    spec = manifest.resolve(task, version)
    if spec.kind == "head":
        return HeadModel(spec, threads=threads, spinning=spinning)
    if task == LANGUAGE_TASK:
        return LanguageModel(spec, threads=threads, spinning=spinning)
    raise ConfigError(f"cannot run a challenger for {task!r}: only classification heads and "
                      "the language model can be shadowed")



def is_english(signals: Mapping[str, Mapping[str, Any]], text_length: int) -> bool:
    """English unless the language model is confident it is something else (and, for a text
    shorter than SHORT_TEXT_CHARS, all but certain)."""
    language = signals.get(LANGUAGE_TASK)
    if language is None or language["label"] == "en":
        return True
    needed = SHORT_TEXT_CONFIDENCE if text_length < SHORT_TEXT_CHARS else NON_ENGLISH_CONFIDENCE
    return float(language["score"]) < needed
