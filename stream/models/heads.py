"""The models that turn text into labels: the language identifier and the heads on the embedding.

Each wraps one verified `OnnxModel` and turns a batch's probabilities into a
`stream.core.outputs.Signal` per item with plain functions. Heads read the encoder's embedding, so a
batch is encoded once and every head runs once on the result.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import orjson

from stream.core.outputs import Signal
from stream.errors import ModelFileError
from stream.models.langid_features import char_ngram_ids
from stream.models.manifest import ModelSpec
from stream.models.onnx_session import OnnxModel

PROBABILITIES = "probabilities"
CONTENT_TYPES = ("show", "episode", "track", "audiobook", "comment")


def load_labels(spec: ModelSpec) -> list[str]:
    path = spec.resolve_path(spec.extra("labels", ""))
    try:
        labels = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ModelFileError(f"cannot read labels {path} of {spec.task}@{spec.version}") from exc
    if not isinstance(labels, list):
        raise ModelFileError(f"labels {path} must be a JSON list of label names")
    return [str(label) for label in labels]


def _checked_model(spec: ModelSpec, inputs: tuple[str, ...], n_labels: int,
                   threads: int, spinning: bool) -> OnnxModel:
    model = OnnxModel(spec.file, spec.sha256, threads=threads, spinning=spinning)
    model.require(inputs=inputs, outputs=(PROBABILITIES,))
    width = model.outputs[PROBABILITIES].shape[-1]
    if isinstance(width, int) and width != n_labels:
        raise ModelFileError(f"{spec.file.name} outputs {width} classes but its labels file "
                             f"lists {n_labels}")
    return model


@dataclass(frozen=True, slots=True)
class ClassifierSpec:
    """What turns a classifier's probabilities into a signal: labels, thresholds, label mode, and
    where it applies. Heads read it from their manifest entry; eval scores against it."""

    task: str
    version: str
    labels: tuple[str, ...]
    multi_label: bool = False
    thresholds: Mapping[str, float] = field(default_factory=dict)
    # The languages its signals are reliable in (None: every language). A head's manifest entry
    # lists them as ``reliable_languages`` (measured per language, MODELS.md); an entry without
    # the list is ``english_only`` (the default) or reliable everywhere.
    reliable_languages: frozenset[str] | None = None
    applies_to: frozenset[str] = frozenset(CONTENT_TYPES)  # content types it was trained for
    # A label that only means something for some content types (safety's ``explicit`` is a
    # feed's self-declared flag) is scored everywhere but flagged only on those.
    label_applies_to: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def thresholds_for(self, content_type: str | None) -> dict[str, float]:
        """The thresholds that can flag an item of `content_type` (None: all of them)."""
        return {label: t for label, t in self.thresholds.items()
                if content_type is None or content_type in self.label_applies_to.get(
                    label, self.applies_to)}


@dataclass(frozen=True, slots=True)
class BatchView:
    """What a classifier may read of one batch's items that have text."""

    texts: Sequence[str]
    content_types: Sequence[str]
    embeddings: np.ndarray


class LanguageModel:
    """Hashed character n-grams → language probabilities (75 ISO 639-1 codes)."""

    def __init__(self, spec: ModelSpec, *, threads: int, spinning: bool = False) -> None:
        self.spec, self.task, self.version = spec, spec.task, spec.version
        self.labels = load_labels(spec)
        self.contract = ClassifierSpec(spec.task, spec.version, tuple(self.labels))
        self.features = {k: int(v) for k, v in spec.extra("features", {}).items()
                         if k in ("n_buckets", "ngram_min", "ngram_max", "max_chars")}
        self.model = _checked_model(spec, ("ngram_ids", "row_scale"), len(self.labels), threads,
                                    spinning)

    def predict(self, texts: Sequence[str]) -> list[Signal]:
        if not texts:
            return []
        ids, scale = char_ngram_ids(texts, **self.features)
        probs = self.model.run({"ngram_ids": ids, "row_scale": scale})[PROBABILITIES]
        return [top_label(row, self.labels, self.version) for row in probs]

    def classify(self, batch: BatchView) -> list[tuple[int, Signal]]:
        """(row, signal) for every item of the batch: the language model reads every text."""
        return list(enumerate(self.predict(batch.texts)))


def reliable_languages(spec: ModelSpec) -> frozenset[str] | None:
    listed = spec.extra("reliable_languages")
    if listed is not None:
        return frozenset(str(code) for code in listed)
    return frozenset({"en"}) if spec.extra("english_only", True) else None


class HeadModel:
    """A classifier on the encoder embedding (topic, safety, sentiment, spam, emotion)."""

    def __init__(self, spec: ModelSpec, *, threads: int, spinning: bool = False) -> None:
        labels = load_labels(spec)
        self.contract = ClassifierSpec(
            task=spec.task, version=spec.version, labels=tuple(labels),
            multi_label=bool(spec.extra("multi_label", False)),
            thresholds={k: float(v) for k, v in spec.extra("thresholds", {}).items()},
            reliable_languages=reliable_languages(spec),
            applies_to=frozenset(spec.extra("applies_to", CONTENT_TYPES)),
            label_applies_to={label: frozenset(types) for label, types
                              in spec.extra("label_applies_to", {}).items()})
        unknown = (set(self.contract.thresholds) | set(self.contract.label_applies_to)) - set(
            labels)
        if unknown:
            raise ModelFileError(f"{spec.task}@{spec.version} has thresholds or label_applies_to "
                                 f"for unknown labels {sorted(unknown)}")
        self.task, self.version = spec.task, spec.version
        self.model = _checked_model(spec, ("embedding",), len(labels), threads, spinning)

    def predict(self, embeddings: np.ndarray,
                content_types: Sequence[str | None] | None = None) -> list[Signal]:
        if embeddings.shape[0] == 0:
            return []
        probs = self.model.run({"embedding": embeddings.astype(np.float32)})[PROBABILITIES]
        types = content_types or [None] * len(probs)
        return [head_signal(row, self.contract, t) for row, t in zip(probs, types, strict=True)]

    def classify(self, batch: BatchView) -> list[tuple[int, Signal]]:
        """(row, signal) for the items of the content types this head applies to."""
        rows = [r for r, t in enumerate(batch.content_types) if t in self.contract.applies_to]
        types = [batch.content_types[r] for r in rows]
        return list(zip(rows, self.predict(batch.embeddings[rows], types), strict=True))


def top_label(row: np.ndarray, labels: Sequence[str], version: str) -> Signal:
    best = int(np.argmax(row))
    return Signal(label=labels[best], score=round(float(row[best]), 6), model=version)


def head_signal(row: np.ndarray, head: ClassifierSpec, content_type: str | None = None) -> Signal:
    """One item's signal. Single-label: the arg-max, unless a thresholded label (e.g. spam)
    reaches its threshold. Multi-label: every label at or over its threshold is flagged (of
    those that apply to `content_type`), the signal's label is the highest of those (or
    ``none``)."""
    scores = {label: round(float(p), 6) for label, p in zip(head.labels, row, strict=True)}
    over = [label for label, t in head.thresholds_for(content_type).items()
            if scores[label] >= t]
    if head.multi_label:
        label = max(over, key=scores.__getitem__) if over else "none"
        score = scores[label] if over else max(scores.values())
    else:
        label = max(over, key=scores.__getitem__) if over else _argmax_without(scores, head)
        score = scores[label]
    return Signal(label=label, score=score, model=head.version, scores=scores,
                  flagged=tuple(sorted(over)))


def _argmax_without(scores: dict[str, float], head: ClassifierSpec) -> str:
    """The most probable label that is not gated by a threshold it failed to reach."""
    allowed = {k: v for k, v in scores.items() if k not in head.thresholds} or scores
    return max(allowed, key=allowed.__getitem__)
