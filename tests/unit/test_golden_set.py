"""The golden set (tests/golden/events.jsonl): well-formed, valid events with well-formed labels.

No models here: these checks keep the hand-labelled set itself honest, so the evaluation that
gates model regressions compares against something sound. See tests/golden/README.md.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream.core.records import ContentEvent
from stream.core.validate import make_validator
from stream.errors import Rejection
from stream.settings import Settings

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "events.jsonl"

GENRES = frozenset({
    "Arts", "Business", "Comedy", "Education", "Fiction", "Government", "Health & Fitness",
    "History", "Kids & Family", "Leisure", "Music", "News", "Religion & Spirituality", "Science",
    "Society & Culture", "Sports", "TV & Film", "Technology", "True Crime",
})
LANGUAGES = frozenset({"en", "de", "fr", "es", "pt", "it", "nl", "sv", "pl", "tr", "ja", "ru",
                       "ar", "hi"})
SAFETY = frozenset({"offensive", "hate", "explicit"})
SENTIMENTS = frozenset({"negative", "neutral", "positive"})
SPAM = frozenset({"spam", "ham"})
EDGES = frozenset({"empty_description", "emoji_only", "mixed_language", "very_long", "all_caps",
                   "url_heavy", "short"})
EXPECTED_KEYS = frozenset({"topic", "language", "safety", "sentiment", "spam", "edge"})
TOPIC_TYPES = frozenset({"show", "episode", "audiobook"})
MARKETS = frozenset({"US", "GB", "DE", "FR", "ES", "BR", "IT", "NL", "SE", "PL", "TR", "JP", "RU",
                     "EG", "IN"})
FIRST = datetime(2026, 10, 1, tzinfo=UTC)
LAST = datetime(2026, 10, 4, tzinfo=UTC)
MIN_PER_GENRE = 8


def _load() -> list[dict[str, Any]]:
    lines = GOLDEN.read_text(encoding="utf-8").splitlines()
    return [orjson.loads(line) for line in lines]


ROWS = _load()


def _text(row: dict[str, Any]) -> str:
    return " ".join(row.get(f, "") for f in ("title", "description", "text"))


def test_size_is_within_bounds() -> None:
    assert 240 <= len(ROWS) <= 300


def test_every_event_validates_once_expected_is_removed() -> None:
    settings = Settings()
    validate = make_validator(settings.schemas_dir, settings.max_event_bytes)
    for row in ROWS:
        event = {k: v for k, v in row.items() if k != "expected"}
        result = validate(orjson.dumps(event))
        assert not isinstance(result, Rejection), (row["event_id"], result)
        assert isinstance(result, ContentEvent)
        assert result.has_text


def test_ids_are_unique_and_numbered() -> None:
    event_ids = [r["event_id"] for r in ROWS]
    assert len(set(event_ids)) == len(event_ids)
    assert all(re.fullmatch(r"g-\d{4}", e) for e in event_ids)
    content_ids = [r["content_id"] for r in ROWS]
    assert len(set(content_ids)) == len(content_ids)


def test_event_shape_follows_the_rules() -> None:
    for row in ROWS:
        assert row["event_type"] != "content.deleted", row["event_id"]
        assert row["market"] in MARKETS, row["event_id"]
        when = datetime.fromisoformat(row["event_time"])
        assert row["event_time"].endswith("Z") and FIRST <= when < LAST, row["event_id"]
        if row["content_type"] == "comment":
            assert row["event_type"].startswith("comment.")
            assert "title" not in row and "description" not in row
        else:
            assert row["event_type"].startswith("content.")
    assert set(Counter(r["market"] for r in ROWS)) == MARKETS
    assert any(r["event_type"] == "content.updated" for r in ROWS)
    assert any(r["event_type"] == "comment.updated" for r in ROWS)


@pytest.mark.parametrize("row", ROWS, ids=[r["event_id"] for r in ROWS])
def test_expected_labels_use_only_allowed_names(row: dict[str, Any]) -> None:
    expected = row["expected"]
    assert isinstance(expected, dict) and set(expected) <= EXPECTED_KEYS
    ctype = row["content_type"]
    if ctype in TOPIC_TYPES:
        assert expected.get("topic") in GENRES
    else:
        assert "topic" not in expected
    if "language" in expected:
        assert expected["language"] in LANGUAGES
    else:
        assert expected.get("edge") == "emoji_only"
    if "safety" in expected:
        safety = expected["safety"]
        assert isinstance(safety, list) and len(set(safety)) == len(safety)
        assert set(safety) <= SAFETY
        if "hate" in safety:  # convention: an attack on a group is also offensive
            assert "offensive" in safety
    if ctype == "comment":
        assert expected.get("spam") in SPAM and "safety" in expected
        if expected["spam"] == "ham":
            assert expected.get("sentiment") in SENTIMENTS
        else:
            assert "sentiment" not in expected  # sentiment of spam is not annotated
    else:
        assert "spam" not in expected and "sentiment" not in expected
    if "edge" in expected:
        assert expected["edge"] in EDGES


def test_every_genre_has_enough_items() -> None:
    topics = Counter(r["expected"]["topic"] for r in ROWS if "topic" in r["expected"])
    assert set(topics) == GENRES
    assert min(topics.values()) >= MIN_PER_GENRE, topics


def test_label_mix_covers_every_task() -> None:
    expected = [r["expected"] for r in ROWS]
    safety = Counter(label for e in expected for label in e.get("safety", ()))
    assert safety["offensive"] >= 20 and safety["hate"] >= 8 and safety["explicit"] >= 12
    assert sum(1 for e in expected if e.get("safety") == []) >= 50
    spam = Counter(e["spam"] for e in expected if "spam" in e)
    assert spam["spam"] >= 10 and spam["ham"] >= 40
    sentiment = Counter(e["sentiment"] for e in expected if "sentiment" in e)
    assert all(sentiment[s] >= 10 for s in SENTIMENTS), sentiment
    languages = Counter(e["language"] for e in expected if "language" in e)
    assert set(languages) == LANGUAGES
    assert all(n >= 3 for n in languages.values()), languages
    assert 0.65 <= languages["en"] / len(ROWS) <= 0.85


def test_every_edge_case_exists_and_looks_like_its_name() -> None:
    by_edge: dict[str, list[dict[str, Any]]] = {}
    for row in ROWS:
        if "edge" in row["expected"]:
            by_edge.setdefault(row["expected"]["edge"], []).append(row)
    assert set(by_edge) == EDGES
    assert all(len(rows) >= 2 for rows in by_edge.values()), {k: len(v) for k, v in by_edge.items()}
    for row in by_edge["empty_description"]:
        assert "description" not in row and row["title"].strip()
    for row in by_edge["emoji_only"]:
        assert "language" not in row["expected"]
        assert not any(ch.isalnum() for ch in _text(row))
    for row in by_edge["very_long"]:
        assert 3000 <= len(row["description"]) <= 15000
    for row in by_edge["all_caps"]:
        text = _text(row)
        assert text == text.upper() and any(ch.isalpha() for ch in text)
    for row in by_edge["url_heavy"]:
        assert len(re.findall(r"https?://", _text(row))) >= 3
    for row in by_edge["short"]:
        assert 1 <= len(_text(row).split()) <= 3
    for row in by_edge["mixed_language"]:
        assert row["expected"]["language"] != "en"
