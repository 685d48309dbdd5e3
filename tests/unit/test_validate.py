"""Validation: every kind of bad input becomes a Rejection with a reason; good input an event."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
        (None, RejectReason.TOMBSTONE, "no value"),
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


# --- duplicate keys ------------------------------------------------------------------------------

@pytest.mark.parametrize("raw", [
    event()[:-1] + b', "title": "Second title"}',                     # top level, compact
    b'{"event_id": "a",\n "event_id" : "b", "title": "t"}',           # spaced: a scan would miss it
    event()[:-1] + b', "\\u0074itle": "escaped t"}',                  # the same key, escaped
    event(tags=None)[:-1] + b', "tags": [{"k": 1, "k": 2}]}',         # nested object
])
def test_a_key_twice_is_a_schema_violation_not_last_one_wins(
    validate: Validator, raw: bytes
) -> None:
    result = validate(raw)
    assert isinstance(result, Rejection), result
    assert result.reason is RejectReason.SCHEMA
    assert "appears more than once" in result.message


def test_the_same_key_in_two_objects_is_fine(validate: Validator) -> None:
    raw = event()[:-1] + b', "producer": "title"}'        # "title" twice in the bytes, once as key
    assert isinstance(validate(raw), ContentEvent)


def test_a_tombstone_has_its_own_class(validate: Validator) -> None:
    result = validate(None)
    assert isinstance(result, Rejection) and result.reason is RejectReason.TOMBSTONE


# --- event time range ----------------------------------------------------------------------------

NOW_MS = 1795597200000            # 2026-11-25T09:00:00Z, GOOD's event_time
MINUTE = 60_000
DAY = 86_400_000


@pytest.fixture(scope="module")
def bounded() -> Validator:
    """300 s into the future, 30 days into the past; a clock for messages without a timestamp."""
    return make_validator(Settings().schemas_dir, max_event_bytes=4096, max_future_skew_s=300,
                          max_event_age_s=30 * 86_400, clock=lambda: NOW_MS + 365 * DAY)


def at(ms: int) -> bytes:
    return event(event_time=datetime.fromtimestamp(ms / 1000, UTC).isoformat())


@pytest.mark.parametrize(("event_ms", "ok"), [
    (NOW_MS, True),
    (NOW_MS + 5 * MINUTE, True),                  # exactly the skew
    (NOW_MS + 5 * MINUTE + 1000, False),          # a second more
    (NOW_MS + 365 * DAY, False),                  # far future
    (NOW_MS - 30 * DAY, True),                    # exactly the horizon
    (NOW_MS - 30 * DAY - 1000, False),
    (0, False),                                   # epoch 0: a producer bug
])
def test_event_time_must_be_near_the_message_timestamp(
    bounded: Validator, event_ms: int, ok: bool
) -> None:
    result = bounded(at(event_ms), NOW_MS)
    if ok:
        assert isinstance(result, ContentEvent), result
    else:
        assert isinstance(result, Rejection)
        assert result.reason is RejectReason.TIME_RANGE
        assert "SIGNALS_MAX_" in result.message


def test_a_skewed_offset_is_judged_as_the_instant_it_names(bounded: Validator) -> None:
    # 09:04:00+00:00 written as 11:04:00+02:00 is within the skew; 09:04 local "+00:00"-less is
    # not an instant at all (invalid_event_time, an earlier check)
    assert isinstance(bounded(event(event_time="2026-11-25T11:04:00+02:00"), NOW_MS),
                      ContentEvent)
    late = bounded(event(event_time="2026-11-25T09:04:00-02:00"), NOW_MS)   # 11:04 UTC
    assert isinstance(late, Rejection) and late.reason is RejectReason.TIME_RANGE


def test_without_a_timestamp_the_clock_is_now_and_without_a_clock_nothing_is_checked(
    bounded: Validator, validate: Validator
) -> None:
    old = at(NOW_MS - 100 * DAY)
    assert isinstance(bounded(old, NOW_MS - 99 * DAY), ContentEvent)    # its own timestamp
    assert isinstance(bounded(old), Rejection)                           # the clock: a year on
    assert isinstance(validate(old), ContentEvent)                       # no bounds at all
    unbounded_with_clock = make_validator(Settings().schemas_dir, 4096, clock=lambda: 0)
    assert isinstance(unbounded_with_clock(at(NOW_MS + 365 * DAY)), ContentEvent)


# --- fuzz: never raises, always an event or a rejection with a class ----------------------------

def _assert_answer(result: object) -> None:
    assert isinstance(result, ContentEvent | Rejection)
    if isinstance(result, Rejection):
        assert isinstance(result.reason, RejectReason) and result.message


@given(st.binary(max_size=600), st.one_of(st.none(), st.integers(-2**63, 2**63 - 1)))
@settings(max_examples=300)
def test_arbitrary_bytes_never_raise(bounded: Validator, raw: bytes, ts: int | None) -> None:
    _assert_answer(bounded(raw, ts))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)


@st.composite
def mutated_events(draw: st.DrawFn) -> bytes:
    data: dict[str, Any] = dict(GOOD)
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(["drop", "set", "time", "add"]))
        key = draw(st.sampled_from([*sorted(GOOD), "text", "description", "show_id"]))
        if action == "drop":
            data.pop(key, None)
        elif action == "set":
            data[key] = draw(json_values)
        elif action == "time":
            data["event_time"] = draw(st.sampled_from([
                "2026-11-25T09:00:00Z", "9999-12-31T23:59:59+14:00", "0001-01-01T00:00:00-12:00",
                "2026-11-25T09:00:00", "2026-13-01T00:00:00Z", "2026-11-25T09:00:00.1234567Z"]))
        else:
            data[draw(st.text(max_size=8))] = draw(json_values)
    raw = json.dumps(data).encode()           # the stdlib writes big ints and lone surrogates
    cut = draw(st.one_of(st.none(), st.integers(0, len(raw))))
    if cut is not None:                         # truncated, or a byte flipped
        if draw(st.booleans()):
            raw = raw[:cut]
        elif cut < len(raw):
            raw = raw[:cut] + bytes([draw(st.integers(0, 255))]) + raw[cut + 1:]
    if draw(st.booleans()):                     # a key repeated
        raw = raw[:-1] + b', "event_id": "again"}' if raw.endswith(b"}") else raw
    return raw


@given(mutated_events(), st.one_of(st.none(), st.integers(-2**62, 2**62)))
@settings(max_examples=400)
def test_mutated_valid_events_never_raise(bounded: Validator, raw: bytes, ts: int | None) -> None:
    _assert_answer(bounded(raw, ts))


def test_deeply_nested_json_is_an_answer_not_a_crash(bounded: Validator) -> None:
    for depth in (500, 1000, 1100):
        _assert_answer(bounded(b'{"a": ' + b"[" * depth + b"]" * depth + b"}"))
