"""Heads are bound to the encoder they were trained on; a challenger may bring its own encoder."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from stream.core.enrich import Enricher
from stream.core.records import ContentEvent
from stream.errors import ConfigError
from stream.models.encoder import TextEncoder
from stream.models.heads import HeadModel
from stream.models.manifest import Manifest, load_manifest, reads_encoder
from stream.settings import Settings

TEXTS = ["this is the worst episode ever, total waste of time",
         "Loved every minute of this interview, thank you!", "ok"]


@pytest.fixture(scope="module")
def manifest(settings: Settings) -> Manifest:
    return load_manifest(settings.manifest_path)


def encoders(manifest: Manifest) -> list[str]:
    return [s.version for s in manifest.models if s.task == "embedding"]


def other_encoder(manifest: Manifest) -> str:
    return next(v for v in encoders(manifest) if v != manifest.active["embedding"])


def test_every_head_names_a_listed_encoder(manifest: Manifest) -> None:
    heads = [s for s in manifest.models if s.kind == "head"]
    assert heads
    for spec in heads:
        assert reads_encoder(spec) in encoders(manifest), spec.version


def test_the_active_heads_read_the_active_encoder(manifest: Manifest) -> None:
    for task, version in manifest.active.items():
        spec = manifest.resolve(task, version)
        assert reads_encoder(spec) in (None, manifest.active["embedding"]), version


def test_a_named_head_on_another_encoder_is_refused_naming_both_and_the_choices(
        manifest: Manifest, settings: Settings) -> None:
    other = other_encoder(manifest)
    sentiment = manifest.active["sentiment"]
    with pytest.raises(ConfigError, match=f"reads embeddings of {manifest.active['embedding']}"
                                          f", but the encoder is {other}: choose a sentiment "
                                          r"model trained on it \(sentiment-"):
        Enricher(manifest, settings, versions={"embedding": other, "sentiment": sentiment})


def test_choosing_another_encoder_alone_runs_the_heads_trained_on_it(
        manifest: Manifest, settings: Settings) -> None:
    other = other_encoder(manifest)
    enricher = Enricher(manifest, settings, versions={"embedding": other})
    for model in enricher.classifiers:
        spec = manifest.resolve(model.task, model.version)
        assert reads_encoder(spec) in (None, other), model.version
        first = next(s for s in manifest.models if s.task == model.task
                     and reads_encoder(s) in (None, other))
        assert model.version == (first.version if reads_encoder(spec) else
                                 manifest.active[model.task])


def test_a_challenger_on_another_encoder_reads_that_encoders_embeddings(
        manifest: Manifest, settings: Settings) -> None:
    other = other_encoder(manifest)
    challenger = next(s for s in manifest.models
                      if s.task == "sentiment" and reads_encoder(s) == other)
    enricher = Enricher(manifest, settings, challengers={"sentiment": challenger.version})
    events = [ContentEvent(event_id=f"e-{i}", event_type="comment.created", content_id=f"c-{i}",
                           content_type="comment", event_time="2026-12-02T00:00:00Z",
                           event_time_ms=0, text=t) for i, t in enumerate(TEXTS)]
    shadow = [e.shadow["sentiment"] for e in enricher.enrich(events)]

    vectors = TextEncoder(manifest.resolve("embedding", other), threads=1,
                          bucket_size=32).encode(TEXTS)
    expected = HeadModel(challenger, threads=1).predict(vectors)
    assert [s.label for s in shadow] == [s.label for s in expected]
    for got, want in zip(shadow, expected, strict=True):
        assert got.scores == pytest.approx(want.scores, abs=1e-4)
    assert all(s.model == challenger.version for s in shadow)


def test_a_text_prefix_is_put_before_every_text(manifest: Manifest) -> None:
    spec = next((s for s in manifest.models if s.extra("text_prefix")), None)
    assert spec is not None, "no encoder with a text prefix (e5 needs 'query: ')"
    bare = dataclasses.replace(spec, raw={**spec.raw, "text_prefix": ""})
    prefix = spec.extra("text_prefix")
    with_prefix = TextEncoder(spec, threads=1, bucket_size=32).encode(TEXTS)
    by_hand = TextEncoder(bare, threads=1, bucket_size=32).encode([prefix + t for t in TEXTS])
    without = TextEncoder(bare, threads=1, bucket_size=32).encode(TEXTS)
    np.testing.assert_allclose(with_prefix, by_hand, atol=1e-6)
    assert not np.allclose(with_prefix, without, atol=1e-3)
