"""From probabilities to signals, flags and aggregation groups: plain functions, by example."""

from __future__ import annotations

import numpy as np

from stream.core.enrich import confident_language
from stream.core.outputs import Signal
from stream.core.records import ContentEvent
from stream.core.rules import aggregation_group, flags_for
from stream.models.heads import ClassifierSpec, head_signal

SPAM = ClassifierSpec("spam", "spam-v1", ("ham", "spam"), multi_label=False,
                thresholds={"spam": 0.8}, reliable_languages=frozenset({"en"}))
SAFETY = ClassifierSpec("safety", "safety-v1", ("offensive", "hate", "explicit"), multi_label=True,
                  thresholds={"offensive": 0.5, "hate": 0.3, "explicit": 0.6},
                  reliable_languages=frozenset({"en"}))
TOPIC = ClassifierSpec("topic", "topic-v1", ("News", "Sports", "Comedy"), multi_label=False,
                 thresholds={}, reliable_languages=frozenset({"en"}))


def sig(label: str, score: float = 0.5, flagged: tuple[str, ...] | None = None) -> Signal:
    return Signal(label=label, score=score, model="m-1", flagged=flagged)


def test_single_label_takes_the_argmax() -> None:
    signal = head_signal(np.array([0.2, 0.7, 0.1]), TOPIC)
    assert (signal.label, signal.score, signal.flagged) == ("Sports", 0.7, ())
    assert signal.scores == {"News": 0.2, "Sports": 0.7, "Comedy": 0.1}


def test_a_thresholded_label_needs_its_threshold() -> None:
    assert head_signal(np.array([0.25, 0.75]), SPAM).label == "ham"   # 0.75 < 0.8
    spam = head_signal(np.array([0.1, 0.9]), SPAM)
    assert (spam.label, spam.flagged) == ("spam", ("spam",))


def test_multi_label_flags_every_label_over_its_own_threshold() -> None:
    signal = head_signal(np.array([0.55, 0.35, 0.2]), SAFETY)
    assert signal.flagged == ("hate", "offensive")
    assert (signal.label, signal.score) == ("offensive", 0.55)
    clean = head_signal(np.array([0.1, 0.05, 0.4]), SAFETY)
    assert (clean.label, clean.flagged, clean.score) == ("none", (), 0.4)


def test_flags_are_named_by_task_and_label() -> None:
    signals = {"spam": sig("spam", flagged=("spam",)),
               "safety": sig("offensive", flagged=("hate", "offensive")), "topic": sig("News")}
    assert flags_for(signals) == ("safety:hate", "safety:offensive", "spam")


def test_a_language_counts_only_when_the_language_model_is_confident() -> None:
    long = 80
    assert confident_language({}, long) is None
    assert confident_language({"language": sig("en", 0.3)}, long) == "en"
    assert confident_language({"language": sig("de", 0.4)}, long) is None
    assert confident_language({"language": sig("de", 0.95)}, long) == "de"


def test_short_texts_need_near_certainty_to_count_as_another_language() -> None:
    assert confident_language({"language": sig("cs", 0.95)}, len("Pivot")) is None
    assert confident_language({"language": sig("de", 0.999)}, len("Sehr gut, danke!")) == "de"


def event(content_type: str, market: str | None = "US") -> ContentEvent:
    return ContentEvent(event_id="e", event_type="content.published", content_id="c",
                        content_type=content_type, event_time="2026-01-01T00:00:00Z",
                        event_time_ms=0, title="t", market=market)


def test_groups_are_topic_by_market_with_fallbacks() -> None:
    topic = {"topic": sig("News", 0.9)}
    assert aggregation_group(event("episode"), topic) == "topic=News|market=US"
    assert aggregation_group(event("show", None), topic) == "topic=News|market=ZZ"
    assert aggregation_group(event("comment"), topic) == "content_type=comment|market=US"
    unreliable = {"topic": sig("News", 0.9).unreliable()}
    assert aggregation_group(event("episode"), unreliable) == "topic=unknown|market=US"
    assert aggregation_group(event("episode"), {}) == "content_type=episode|market=US"
