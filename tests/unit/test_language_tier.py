"""The language tier: items whose champion signals are unreliable for their language are served by
the multilingual encoder's heads where those are reliable in it; English items and the record's
embedding stay the champions'."""

from __future__ import annotations

import numpy as np
import pytest

from stream.core.enrich import Enricher, Enrichment
from stream.core.records import ContentEvent
from stream.models.encoder import TextEncoder
from stream.models.heads import HeadModel
from stream.models.manifest import Manifest, load_manifest
from stream.settings import Settings

COMMENTS = {
    "en": "Loved every minute of this interview, thank you so much for making it!",
    "de": "Diese Folge war wirklich großartig, vielen Dank für das tolle Gespräch!",
    "ja": "このエピソードは本当に素晴らしかったです。ありがとうございました！",
    "ko": "이 에피소드는 정말 최고였어요. 좋은 대화 감사합니다!",
}


@pytest.fixture(scope="module")
def manifest(settings: Settings) -> Manifest:
    return load_manifest(settings.manifest_path)


def comments() -> list[ContentEvent]:
    return [ContentEvent(event_id=f"e-{lang}", event_type="comment.created",
                         content_id=f"c-{lang}", content_type="comment",
                         event_time="2026-12-02T00:00:00Z", event_time_ms=0, text=text)
            for lang, text in COMMENTS.items()]


def enriched(manifest: Manifest, settings: Settings) -> dict[str, Enrichment]:
    out = Enricher(manifest, settings).enrich(comments())
    return dict(zip(COMMENTS, out, strict=True))


def test_the_manifest_names_a_tier_with_heads_that_list_their_languages(
        manifest: Manifest) -> None:
    assert manifest.language_tier is not None
    heads = manifest.heads_on(manifest.language_tier)
    assert {h.task for h in heads} >= {"topic", "safety", "sentiment", "spam", "emotion"}
    assert all("de" in h.extra("reliable_languages") for h in heads)


def test_non_english_comments_get_the_tiers_reliable_signals(manifest: Manifest,
                                                             settings: Settings) -> None:
    tier = str(manifest.language_tier)
    sentiment = next(h for h in manifest.heads_on(tier) if h.task == "sentiment")
    out = enriched(manifest, settings)
    assert out["en"].signals["sentiment"].model == manifest.active["sentiment"]
    for lang in ("de", "ja"):
        signal = out[lang].signals["sentiment"]
        assert out[lang].signals["language"].label == lang
        assert (signal.model, signal.is_reliable, signal.label) == (
            sentiment.version, True, "positive")
        vector = TextEncoder(manifest.resolve("embedding", tier), threads=1,
                             bucket_size=8).encode([COMMENTS[lang]])
        want = HeadModel(sentiment, threads=1).predict(vector)[0]
        # the tier encodes de, ja and ko in one batch: dynamic int8 differs slightly per batch
        assert signal.scores == pytest.approx(want.scores, abs=2e-3)


def test_a_language_the_tier_was_not_measured_in_stays_unreliable(manifest: Manifest,
                                                                   settings: Settings) -> None:
    korean = enriched(manifest, settings)["ko"]
    assert korean.signals["language"].label == "ko"
    assert korean.signals["sentiment"].model == manifest.active["sentiment"]
    assert not korean.signals["sentiment"].is_reliable


def test_the_embedding_stays_the_champion_encoders(manifest: Manifest,
                                                   settings: Settings) -> None:
    out = enriched(manifest, settings)
    champion = TextEncoder(manifest.resolve("embedding"), threads=1,
                           bucket_size=settings.encoder_bucket_size)
    want = champion.encode(list(COMMENTS.values()))
    got = np.stack([out[lang].embedding for lang in COMMENTS])
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_turned_off_the_champions_signals_stay_unreliable(manifest: Manifest,
                                                          settings: Settings) -> None:
    out = enriched(manifest, settings.replace(language_tier=False))
    assert out["de"].signals["sentiment"].model == manifest.active["sentiment"]
    assert not out["de"].signals["sentiment"].is_reliable
