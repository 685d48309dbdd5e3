"""The cascade: the cheap heads serve what they are sure of, the strong encoder's heads the rest;
the record's embedding stays the cheap encoder's."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.core.cascade import escalated_rows, replace_signals, signal_confidence
from stream.core.enrich import Enricher
from stream.core.outputs import Signal
from stream.core.records import ContentEvent
from stream.errors import ModelFileError
from stream.models.encoder import TextEncoder
from stream.models.heads import ClassifierSpec, head_signal
from stream.models.manifest import CascadeSpec, Manifest, load_manifest
from stream.settings import Settings

SENTIMENT = ClassifierSpec("sentiment", "s-v1", ("negative", "neutral", "positive"))
SPAM = ClassifierSpec("spam", "spam-v1", ("ham", "spam"), thresholds={"spam": 0.7})
SAFETY = ClassifierSpec("safety", "safety-v1", ("offensive", "hate", "explicit"),
                        multi_label=True,
                        thresholds={"offensive": 0.6, "hate": 0.4, "explicit": 0.3},
                        label_applies_to={"explicit": frozenset({"show"})})
probability = st.floats(0.0, 1.0, allow_nan=False)


@given(st.lists(probability, min_size=3, max_size=3))
def test_confidence_is_a_share_between_zero_and_one(p: list[float]) -> None:
    for head, row in ((SENTIMENT, p), (SPAM, [1 - p[0], p[0]]), (SAFETY, p)):
        for content_type in ("comment", "show"):
            value = signal_confidence(head_signal(np.array(row), head, content_type), head,
                                      content_type)
            assert 0.0 <= value <= 1.0


@given(probability, probability)
def test_a_softmax_heads_confidence_is_its_top_two_margin(a: float, b: float) -> None:
    row = np.array([a, b, max(0.0, 1.0 - a - b)])
    top = sorted(row.tolist(), reverse=True)
    signal = head_signal(row, SENTIMENT)
    assert signal_confidence(signal, SENTIMENT, "comment") == pytest.approx(
        top[0] - top[1], abs=2e-6)


def test_a_thresholded_label_is_least_sure_at_its_threshold() -> None:
    def confidence(p_spam: float) -> float:
        return signal_confidence(head_signal(np.array([1 - p_spam, p_spam]), SPAM), SPAM,
                                 "comment")
    assert confidence(0.7) == pytest.approx(0.0, abs=1e-6)
    assert confidence(0.0) == confidence(1.0) == pytest.approx(1.0)
    assert confidence(0.35) == pytest.approx(0.5)   # halfway between 0 and the threshold
    assert confidence(0.85) == pytest.approx(0.5)   # halfway between the threshold and 1


def test_a_label_that_does_not_apply_to_the_content_type_does_not_count() -> None:
    row = np.array([0.0, 0.0, 0.3])   # explicit sits on its threshold, which comments lack
    assert signal_confidence(head_signal(row, SAFETY, "comment"), SAFETY, "comment") == 1.0
    assert signal_confidence(head_signal(row, SAFETY, "show"), SAFETY, "show") == 0.0


def unsure(task: str = "sentiment") -> Signal:
    return Signal("neutral", 0.4, f"{task}-cheap", scores={"negative": 0.3, "neutral": 0.4,
                                                           "positive": 0.3})


def test_only_reliable_signals_below_their_tasks_minimum_escalate() -> None:
    sure = Signal("positive", 0.98, "sentiment-cheap",
                  scores={"negative": 0.01, "neutral": 0.01, "positive": 0.98})
    per_item = [{"sentiment": sure}, {"sentiment": unsure()}, {"sentiment": unsure().unreliable()},
                {}, {"language": Signal("en", 0.9, "langid")}]
    contracts = {"sentiment": SENTIMENT}
    types = ["comment"] * len(per_item)
    assert escalated_rows(per_item, types, contracts, {"sentiment": 0.5}) == [1]
    assert escalated_rows(per_item, types, contracts, {"sentiment": 0.0}) == []
    assert escalated_rows(per_item, types, contracts, {"sentiment": 1.0}) == [0, 1]
    assert escalated_rows(per_item, types, contracts, {"topic": 1.0}) == []


def test_the_strong_heads_replace_every_task_they_serve_reliably() -> None:
    per_item = [{"sentiment": unsure(), "spam": unsure("spam"), "language": unsure("language")}]
    served = [{"sentiment": Signal("positive", 0.9, "sentiment-strong"),
               "spam": Signal("ham", 0.9, "spam-strong").unreliable(),
               "emotion": Signal("joy", 0.9, "emotion-strong")}]
    replace_signals(per_item, [0], served)
    assert {task: s.model for task, s in per_item[0].items()} == {
        "sentiment": "sentiment-strong", "spam": "spam-cheap", "language": "language-cheap"}


# The manifest's cascade, with the real models.

COMMENTS = ["Loved every minute of this interview, thank you so much for making it!",
            "meh", "The host kept interrupting and the audio was awful.",
            "Diese Folge war wirklich großartig, vielen Dank für das tolle Gespräch!"]


@pytest.fixture(scope="module")
def manifest(settings: Settings) -> Manifest:
    return load_manifest(settings.manifest_path)


def comments() -> list[ContentEvent]:
    return [ContentEvent(event_id=f"e-{i}", event_type="comment.created", content_id=f"c-{i}",
                         content_type="comment", event_time="2026-12-02T00:00:00Z",
                         event_time_ms=0, text=text) for i, text in enumerate(COMMENTS)]


def with_minimum(manifest: Manifest, minimum: float) -> Manifest:
    spec = manifest.cascades["cascade"]
    tasks = dict.fromkeys(spec.min_confidence, minimum)
    return dataclasses.replace(manifest, cascades={"cascade": CascadeSpec(spec.encoder, tasks)})


def test_the_manifest_has_a_cascade_profile_from_the_fast_encoder_to_the_active_one(
        manifest: Manifest) -> None:
    spec = manifest.cascade("cascade")
    assert spec is not None
    assert manifest.profile("cascade")["embedding"] == manifest.profile("fast")["embedding"]
    assert spec.encoder == manifest.active["embedding"]
    assert set(spec.min_confidence) == {"topic", "safety", "sentiment", "spam", "emotion"}


def test_escalated_items_get_the_strong_heads_and_keep_the_cheap_embedding(
        manifest: Manifest, settings: Settings) -> None:
    cascade = settings.replace(profile="cascade", language_tier=False)
    strong = {h.task: h.version for h in manifest.heads_on(manifest.active["embedding"])}
    cheap_encoder = manifest.profile("cascade")["embedding"]
    cheap = {h.task: h.version for h in manifest.heads_on(cheap_encoder)}
    versions = manifest.profile("cascade")   # what build_pipeline passes for the profile
    everything = Enricher(with_minimum(manifest, 1.0), cascade, versions).enrich(comments())
    nothing = Enricher(with_minimum(manifest, 0.0), cascade, versions).enrich(comments())
    fast = Enricher(manifest, settings.replace(profile="fast", language_tier=False),
                    manifest.profile("fast")).enrich(comments())
    for all_up, none_up, alone in zip(everything[:3], nothing[:3], fast[:3], strict=True):
        assert {t: s.model for t, s in all_up.signals.items() if t != "language"} == {
            t: strong[t] for t in ("safety", "sentiment", "spam", "emotion")}
        assert none_up.signals == alone.signals
        assert {t: s.model for t, s in none_up.signals.items() if t != "language"} == {
            t: cheap[t] for t in ("safety", "sentiment", "spam", "emotion")}
        np.testing.assert_array_equal(all_up.embedding, alone.embedding)
    german = everything[3].signals["sentiment"]   # unreliable in English: left for the tier
    assert (german.model, german.is_reliable) == (cheap["sentiment"], False)
    want = TextEncoder(manifest.resolve("embedding", cheap_encoder), threads=1,
                       bucket_size=8).encode(COMMENTS)
    np.testing.assert_allclose(np.stack([e.embedding for e in everything]), want, atol=1e-5)


def test_a_cascade_must_name_a_profile_and_minimums_between_zero_and_one(
        tmp_path: Path) -> None:
    def load(raw: dict[str, object]) -> None:
        path = tmp_path / "manifest.json"
        path.write_bytes(orjson.dumps({"format": 1, "models": [], "active": {}, **raw}))
        load_manifest(path)

    with pytest.raises(ModelFileError, match="name no profile"):
        load({"cascades": {"quick": {"encoder": "e5"}}})
    with pytest.raises(ModelFileError, match=r"min_confidence must map tasks to numbers"):
        load({"profiles": {"quick": {}},
              "cascades": {"quick": {"encoder": "e5", "min_confidence": {"topic": 2}}}})
    with pytest.raises(ModelFileError, match="needs an \"encoder\""):
        load({"profiles": {"quick": {}}, "cascades": {"quick": {}}})
