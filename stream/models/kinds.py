"""The one dispatch of model kinds: a manifest entry's ``kind`` → the class that loads it.

``encoder`` (text → embedding), ``charngram`` (text → language) and ``head`` (embedding → labels).
A classifier kind (everything but the encoder) answers `classify(BatchView)` with (row, signal)
pairs, so the enricher runs champions and challengers alike without asking what they are. A new
kind is a class with that method and one entry in `CLASSIFIERS`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from stream.core.outputs import Signal
from stream.errors import ConfigError
from stream.models.encoder import TextEncoder
from stream.models.heads import BatchView, ClassifierSpec, HeadModel, LanguageModel
from stream.models.manifest import ModelSpec

ENCODER_KIND = "encoder"


class Classifier(Protocol):
    task: str
    version: str
    contract: ClassifierSpec

    def classify(self, batch: BatchView) -> list[tuple[int, Signal]]: ...


CLASSIFIERS: dict[str, Callable[..., Classifier]] = {
    "charngram": LanguageModel,
    "head": HeadModel,
}


def load_encoder(spec: ModelSpec, *, threads: int, spinning: bool,
                 bucket_size: int) -> TextEncoder:
    if spec.kind != ENCODER_KIND:
        raise ConfigError(f"{spec.task}@{spec.version} is a {spec.kind!r} model, not an encoder")
    return TextEncoder(spec, bucket_size=bucket_size, threads=threads, spinning=spinning)


def load_classifier(spec: ModelSpec, *, threads: int, spinning: bool) -> Classifier:
    """The classifier of `spec`'s kind, loaded and verified; a ConfigError for any other kind."""
    loader = CLASSIFIERS.get(spec.kind)
    if loader is None:
        raise ConfigError(f"{spec.task}@{spec.version} has kind {spec.kind!r}: only "
                          f"{sorted(CLASSIFIERS)} models classify (and can be challengers)")
    return loader(spec, threads=threads, spinning=spinning)
