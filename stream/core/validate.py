"""Validation at the edge: raw bytes in, a `ContentEvent` or a `Rejection` out. Never raises.

The checks run cheapest first: size, UTF-8, JSON, the text rule, the JSON Schema
(schemas/content.events.v1.json, compiled once by fastjsonschema), then the event time.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import fastjsonschema
import orjson

from stream.core.records import ContentEvent
from stream.errors import ConfigError, Rejection, RejectReason

EVENT_SCHEMA = "content.events.v1.json"
TEXT_FIELDS = ("title", "description", "text")

Validator = Callable[[bytes | None], ContentEvent | Rejection]


def load_schema(schemas_dir: Path, name: str) -> dict[str, Any]:
    path = schemas_dir / name
    try:
        schema: dict[str, Any] = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read schema {path}: {exc}; check SIGNALS_SCHEMAS_DIR") from exc
    return schema


def make_validator(schemas_dir: Path, max_event_bytes: int) -> Validator:
    """Compile the event schema once; return the function that validates one message."""
    check_schema = fastjsonschema.compile(load_schema(schemas_dir, EVENT_SCHEMA))

    def validate(raw: bytes | None) -> ContentEvent | Rejection:
        return validate_event(raw, check_schema, max_event_bytes)

    return validate


def validate_event(
    raw: bytes | None, check_schema: Callable[[Any], Any], max_event_bytes: int
) -> ContentEvent | Rejection:
    if raw is None:
        return Rejection(RejectReason.INVALID_JSON, "message has no value (null / tombstone)")
    if len(raw) > max_event_bytes:
        return Rejection(RejectReason.TOO_LARGE,
                         f"message is {len(raw)} bytes; the limit is {max_event_bytes}")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejection(RejectReason.INVALID_UTF8, f"not valid UTF-8 at byte {exc.start}")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return Rejection(RejectReason.INVALID_JSON, f"not valid JSON: {exc}")
    if not isinstance(data, dict):
        return Rejection(RejectReason.INVALID_JSON,
                         f"expected a JSON object, got {type(data).__name__}")
    return _validate_object(data, check_schema)


def _validate_object(
    data: dict[str, Any], check_schema: Callable[[Any], Any]
) -> ContentEvent | Rejection:
    if data.get("event_type") != "content.deleted" and not _has_text(data):
        return Rejection(RejectReason.MISSING_TEXT,
                         "needs at least one non-empty text field among title, description, text")
    try:
        check_schema(data)
    except fastjsonschema.JsonSchemaException as exc:
        return Rejection(RejectReason.SCHEMA, str(exc))
    event_time_ms = parse_event_time(data["event_time"])
    if isinstance(event_time_ms, Rejection):
        return event_time_ms
    return ContentEvent(
        event_id=data["event_id"], event_type=data["event_type"], content_id=data["content_id"],
        content_type=data["content_type"], event_time=data["event_time"],
        event_time_ms=event_time_ms, title=data.get("title", ""),
        description=data.get("description", ""), text=data.get("text", ""),
        creator_id=data.get("creator_id"), show_id=data.get("show_id"),
        market=data.get("market"), language=data.get("language"),
        tags=tuple(data.get("tags", ())), producer=data.get("producer"),
    )


def _has_text(data: dict[str, Any]) -> bool:
    return any(isinstance(data.get(f), str) and data[f].strip() for f in TEXT_FIELDS)


def parse_event_time(value: str) -> int | Rejection:
    """ISO-8601 with an explicit offset → epoch milliseconds (the schema checked the shape)."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        return Rejection(RejectReason.INVALID_TIME, f"event_time {value!r}: {exc}")
    if parsed.tzinfo is None:
        return Rejection(RejectReason.INVALID_TIME, f"event_time {value!r} has no UTC offset")
    return int(parsed.timestamp() * 1000)
