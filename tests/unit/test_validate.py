"""Validation: every kind of bad input becomes a Rejection with a reason; good input an event."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from stream.core.records import ContentEvent
from stream.core.validate import Validator, make_validator
from stream.errors import Rejection, RejectReason
from stream.settings import Settings

GOOD: dict[str, Any] = {
    "event_id": "evt-1", "event_type": "content.published", "content_id": "ep-1",
    "content_type": "episode", "event_time": "2026-11-25T09:00:00Z",
    "title": "How do black holes form?", "market": "US", "tags": ["science"],
}


@pytest.fixture(scope="module")
def validate() -> Validator:
    settings = Settings()
    return make_validator(settings.schemas_dir, max_event_bytes=4096)


def event(**changes: Any) -> bytes:
    data = {**GOOD, **changes}
    return orjson.dumps({k: v for k, v in data.items() if v is not None})


def test_a_valid_event_becomes_a_content_event(validate: Validator) -> None:
    result = validate(event())
    assert isinstance(result, ContentEvent)
    assert result.event_time_ms == 1795597200000
    assert result.tags == ("science",)
    assert result.model_text == "How do black holes form?"


def test_event_time_with_offset_is_converted_to_utc_millis(validate: Validator) -> None:
    result = validate(event(event_time="2026-11-25T10:00:00.250+01:00"))
    assert isinstance(result, ContentEvent)
    assert result.event_time_ms == 1795597200250


def test_model_text_joins_non_empty_fields_title_first(validate: Validator) -> None:
    result = validate(event(description="  Stellar collapse.  ", text=""))
    assert isinstance(result, ContentEvent)
    assert result.model_text == "How do black holes form?. Stellar collapse."


@pytest.mark.parametrize(
    ("raw", "reason", "fragment"),
    [
        (b"\xff\xfe{}", RejectReason.INVALID_UTF8, "UTF-8"),
        (b'{"event_id": ', RejectReason.INVALID_JSON, "not valid JSON"),
        (b"[1, 2]", RejectReason.INVALID_JSON, "JSON object"),
        (None, RejectReason.INVALID_JSON, "no value"),
        (b"x" * 5000, RejectReason.TOO_LARGE, "limit is 4096"),
    ],
)
def test_undecodable_messages_are_rejected(
    validate: Validator, raw: bytes | None, reason: RejectReason, fragment: str
) -> None:
    result = validate(raw)
    assert isinstance(result, Rejection)
    assert result.reason is reason
    assert fragment in result.message


@pytest.mark.parametrize(
    ("changes", "reason", "fragment"),
    [
        ({"event_id": 7}, RejectReason.SCHEMA, "event_id must be string"),
        ({"content_id": None}, RejectReason.SCHEMA, "content_id"),
        ({"content_type": "podcast"}, RejectReason.SCHEMA, "content_type must be one of"),
        ({"title": "   "}, RejectReason.MISSING_TEXT, "non-empty text field"),
        ({"title": "t" * 1001}, RejectReason.SCHEMA, "title must be shorter than or equal to 1000"),
        ({"surprise": 1}, RejectReason.SCHEMA, "surprise"),
        ({"market": "usa"}, RejectReason.SCHEMA, "market"),
        ({"event_time": "yesterday"}, RejectReason.SCHEMA, "event_time"),
        ({"event_time": "2026-02-30T00:00:00Z"}, RejectReason.INVALID_TIME, "day is out of range"),
    ],
)
def test_contract_violations_are_rejected_with_the_field_named(
    validate: Validator, changes: dict[str, Any], reason: RejectReason, fragment: str
) -> None:
    result = validate(event(**changes))
    assert isinstance(result, Rejection), result
    assert result.reason is reason
    assert fragment in result.message


def test_comments_carry_only_text(validate: Validator) -> None:
    comment = {"content_type": "comment", "event_type": "comment.created", "text": "Loved it"}
    assert isinstance(validate(event(**comment, title=None)), ContentEvent)
    with_title = validate(event(**comment, title="A title"))
    assert isinstance(with_title, Rejection)
    assert "title must not be there" in with_title.message


def test_deleted_content_needs_no_text(validate: Validator) -> None:
    result = validate(event(event_type="content.deleted", title=None))
    assert isinstance(result, ContentEvent)
    assert not result.has_text


def test_non_ascii_text_is_accepted(validate: Validator) -> None:
    result = validate(event(title="Folge 37: Der Fall der Mauer – 東京 🎧"))
    assert isinstance(result, ContentEvent)
