"""Enrichment: run every model of the suite over one micro-batch of validated events.

Per batch: the language model once on the texts, the encoder once (one ONNX call per length
bucket), then each classification head once on the embeddings. The result per event is an
`Enrichment`: the embedding and a `stream.core.outputs.Signal` per task whose model ran.

Content-type routing: each head runs (once per batch) on the items of the content types it was
trained for (``applies_to`` in its manifest entry): topic on shows, episodes and audiobooks;
sentiment, emotion and spam on comments; safety on everything.

Encoder binding: a head's manifest entry names the ``encoder`` version whose embeddings it was
trained on. A champion head must read the champion encoder (else a ConfigError at start). When
another encoder is chosen (``--model embedding=...`` in replay or eval) and a task's version is not
named, that task runs the first listed head trained on the chosen encoder, so choosing the v1
encoder replays the whole v1 suite (`Manifest.resolve_beside`). A challenger head that reads
another encoder gets that encoder loaded beside it, so a new encoder and its heads can shadow
today's before they are promoted.

Cascade: a profile with an escalation (``SIGNALS_PROFILE=cascade``) sends the items its heads are
not confident on through a stronger encoder and its heads (`stream.core.cascade`), before the
language tier.

Language tier: when the manifest names a ``language_tier`` encoder (multilingual-e5-small), the
items whose champion signals came out unreliable for their language are encoded once more by
it, and its heads' signals replace those where they are reliable in that language (each signal's
``model`` says which head served it). The record's ``embedding`` stays the champion encoder's,
so the similarity index keeps one vector space. ``SIGNALS_LANGUAGE_TIER=false`` turns it off.

Language routing: each head is reliable in the languages its manifest entry lists
(``reliable_languages``, measured per language; English only for heads on an English-only
encoder). Every head still runs on every text (one call per batch either way), but when the
language model is confident the text is in a language outside that list
(``NON_ENGLISH_CONFIDENCE``; ``SHORT_TEXT_CONFIDENCE`` for short texts), the head's signal carries
``"reliable": false``, raises no flags, and the topic does not enter the aggregation group.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

import numpy as np

from stream.core.cascade import escalated_rows, replace_signals
from stream.core.outputs import Signal, Signals
from stream.core.records import ContentEvent
from stream.models.encoder import TextEncoder
from stream.models.heads import BatchView, ClassifierSpec
from stream.models.kinds import Classifier, load_classifier, load_encoder
from stream.models.manifest import Manifest, reads_encoder
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
    signals: dict[str, Signal] = field(default_factory=dict)
    shadow: dict[str, Signal] = field(default_factory=dict)  # challenger signals


class Enricher:
    """Loads (and verifies) the manifest's active models once; `enrich` is called per batch."""

    def __init__(self, manifest: Manifest, settings: Settings,
                 versions: Mapping[str, str] | None = None,
                 challengers: Mapping[str, str] | None = None) -> None:
        versions = versions or {}
        threads, spinning = settings.model_threads, settings.model_spinning
        def encoder(version: str | None) -> TextEncoder:
            return load_encoder(manifest.resolve(EMBEDDING_TASK, version), threads=threads,
                                spinning=spinning, bucket_size=settings.encoder_bucket_size)

        self.encoder = encoder(versions.get(EMBEDDING_TASK))
        specs = [manifest.resolve_beside(task, versions.get(task), self.encoder.version)
                 for task in manifest.active if task != EMBEDDING_TASK]
        self.classifiers = [load_classifier(spec, threads=threads, spinning=spinning)
                            for spec in specs]
        shadow_specs = [manifest.resolve(task, version)
                        for task, version in (challengers or {}).items()]
        self.challengers = [(load_classifier(spec, threads=threads, spinning=spinning),
                             reads_encoder(spec) or self.encoder.version)
                            for spec in shadow_specs]
        self.shadow_encoders = {version: encoder(version)
                                for _, version in self.challengers
                                if version != self.encoder.version}
        escalation = manifest.cascade(settings.profile, self.encoder.version)
        self.cascade = None if escalation is None else Cascade(
            encoder(escalation.encoder),
            [load_classifier(spec, threads=threads, spinning=spinning)
             for spec in manifest.heads_on(escalation.encoder)],
            escalation.min_confidence,
            {model.task: model.contract for model in self.classifiers})
        tier = manifest.tier_versions(self.encoder.version, settings.language_tier)
        self.tier = None if not tier else LanguageTier(
            encoder(tier[EMBEDDING_TASK]),
            [load_classifier(spec, threads=threads, spinning=spinning)
             for spec in manifest.heads_on(tier[EMBEDDING_TASK])])

    @property
    def versions(self) -> dict[str, str]:
        """Task → model version of every model this enricher runs."""
        return {EMBEDDING_TASK: self.encoder.version,
                **{model.task: model.version for model in self.classifiers}}

    @property
    def language(self) -> Classifier | None:
        return next((m for m in self.classifiers if m.task == LANGUAGE_TASK), None)

    def enrich(self, events: Sequence[ContentEvent],
               timings: ModelTimings | None = None) -> list[Enrichment]:
        """Every model over the batch; with `timings`, each model's wall time is added to it."""
        with_text = [i for i, e in enumerate(events) if e.has_text]
        texts = [events[i].model_text for i in with_text]
        encoder = self.encoder
        embeddings = timed(timings, EMBEDDING_TASK, encoder.version, partial(encoder.encode, texts))
        batch = BatchView(texts, [events[i].content_type for i in with_text], embeddings)
        per_item = run_models(self.classifiers, batch, timings)
        if self.cascade is not None:
            self.cascade.serve(batch, per_item, timings)
        if self.tier is not None:
            self.tier.serve(batch, per_item, timings)
        shadows = self._shadow(batch, per_item, timings)
        result = [Enrichment(embedding=None) for _ in events]
        for row, i in enumerate(with_text):
            result[i] = Enrichment(embedding=batch.embeddings[row], signals=per_item[row],
                                   shadow=shadows[row])
        return result

    def _shadow(self, batch: BatchView, champions: list[dict[str, Signal]],
                timings: ModelTimings | None) -> list[dict[str, Signal]]:
        """The challengers, each on the embeddings of the encoder it reads; the champions'
        language decides which of their signals are unreliable."""
        views = {self.encoder.version: batch}
        for version, encoder in self.shadow_encoders.items():
            vectors = timed(timings, EMBEDDING_TASK, version, partial(encoder.encode, batch.texts))
            views[version] = BatchView(batch.texts, batch.content_types, vectors)
        shadows: list[dict[str, Signal]] = [{} for _ in batch.texts]
        for version, view in views.items():
            models = [model for model, reads in self.challengers if reads == version]
            for row, signals in enumerate(run_models(models, view, timings, champions)):
                shadows[row].update(signals)
        return shadows


class Cascade:
    """A stronger encoder and its heads, for the items the profile's heads are unsure of."""

    def __init__(self, encoder: TextEncoder, heads: Sequence[Classifier],
                 min_confidence: Mapping[str, float],
                 contracts: Mapping[str, ClassifierSpec]) -> None:
        """`contracts`: the profile's own heads by task, whose signals are judged."""
        self.encoder, self.heads = encoder, list(heads)
        self.min_confidence, self.contracts = dict(min_confidence), dict(contracts)

    def serve(self, batch: BatchView, per_item: list[dict[str, Signal]],
              timings: ModelTimings | None) -> None:
        """Encode the escalated rows again and let the stronger heads' signals replace theirs."""
        rows = escalated_rows(per_item, batch.content_types, self.contracts, self.min_confidence)
        if not rows:
            return
        served = encode_again(self.encoder, self.heads, batch, rows, per_item, timings)
        replace_signals(per_item, rows, served)


class LanguageTier:
    """A multilingual encoder and its heads, for the items the champions are unreliable on."""

    def __init__(self, encoder: TextEncoder, heads: Sequence[Classifier]) -> None:
        self.encoder, self.heads = encoder, list(heads)
        self.tasks = {head.task for head in self.heads}

    def serve(self, batch: BatchView, per_item: list[dict[str, Signal]],
              timings: ModelTimings | None) -> None:
        """Replace, in `per_item`, each unreliable champion signal of a task the tier has a head
        for by the tier head's signal where that one is reliable."""
        rows = [row for row, signals in enumerate(per_item)
                if any(not s.is_reliable for task, s in signals.items() if task in self.tasks)]
        if not rows:
            return
        served = encode_again(self.encoder, self.heads, batch, rows, per_item, timings)
        for row, signals in zip(rows, served, strict=True):
            for task, signal in signals.items():
                champion = per_item[row].get(task)
                if champion is not None and not champion.is_reliable and signal.is_reliable:
                    per_item[row][task] = signal


def encode_again(encoder: TextEncoder, heads: Sequence[Classifier], batch: BatchView,
                 rows: Sequence[int], per_item: Sequence[Signals],
                 timings: ModelTimings | None) -> list[dict[str, Signal]]:
    """The signals of `heads` on `rows` of the batch, encoded once more by `encoder` (the
    cascade's and the language tier's second pass; the rows' known language decides
    reliability)."""
    texts = [batch.texts[row] for row in rows]
    vectors = timed(timings, EMBEDDING_TASK, encoder.version, partial(encoder.encode, texts))
    view = BatchView(texts, [batch.content_types[row] for row in rows], vectors)
    return run_models(heads, view, timings, [per_item[row] for row in rows])


def run_models(models: Sequence[Classifier], batch: BatchView, timings: ModelTimings | None,
               known: Sequence[Signals] | None = None) -> list[dict[str, Signal]]:
    """Each model once on the batch, language first: a model's signal on a text the language
    model (of this run, else of `known`) confidently puts in a language outside the model's
    ``reliable_languages`` is marked unreliable (and flags nothing)."""
    per_item: list[dict[str, Signal]] = [{} for _ in batch.texts]
    detected: list[str | None] | None = None
    for model in sorted(models, key=lambda m: m.task != LANGUAGE_TASK):
        classified = timed(timings, model.task, model.version, partial(model.classify, batch))
        languages = model.contract.reliable_languages
        for row, signal in classified:
            if languages is not None:
                detected = detected or [
                    confident_language({**known[i], **s} if known else s, len(text))
                    for i, (s, text) in enumerate(zip(per_item, batch.texts, strict=True))]
                language = detected[row]
                signal = signal if language is None or language in languages \
                    else signal.unreliable()
            per_item[row][model.task] = signal
    return per_item


def confident_language(signals: Signals, text_length: int) -> str | None:
    """The language model's label when it is confident (for a text shorter than
    SHORT_TEXT_CHARS, all but certain), else None; English needs no confidence."""
    language = signals.get(LANGUAGE_TASK)
    if language is None or language.label == "en":
        return None if language is None else "en"
    needed = SHORT_TEXT_CONFIDENCE if text_length < SHORT_TEXT_CHARS else NON_ENGLISH_CONFIDENCE
    return language.label if language.score >= needed else None

