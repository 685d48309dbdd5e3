"""process_batch: every input message ends as exactly one signal record or one dead letter."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from collections import Counter
from collections.abc import Sequence
from typing import Any

import orjson
import pytest

from stream.connectors.kafka import DLQ_MAX_MESSAGE_BYTES
from stream.core.enrich import Enricher, Enrichment, ModelTimings
from stream.core.outputs import (
    DLQ_HEAD_BYTES,
    DLQ_ORIGINAL_MAX_BYTES,
    DLQ_UTF8_MAX_BYTES,
    Record,
    serialise,
)
from stream.core.pipeline import Pipeline, dead_letter, process_batch
from stream.core.records import ContentEvent, Position, RawMessage
from stream.errors import Rejection, RejectReason


def wire(record: Record) -> dict[str, Any]:
    """The record's value as a sink writes it, read back."""
    value: dict[str, Any] = orjson.loads(serialise(record).value)
    return value


def message(offset: int, value: bytes | None) -> RawMessage:
    return RawMessage(value=value, position=Position("content.events.v1", 3, offset),
                      key=b"k", timestamp_ms=1_000)


def event(i: int, **changes: Any) -> bytes:
    return orjson.dumps({"event_id": f"e-{i}", "event_type": "content.published",
                         "content_id": f"c-{i}", "content_type": "show",
                         "event_time": "2026-01-05T10:00:00Z", "title": f"Show number {i}",
                         "market": "GB", **changes})


def test_one_output_per_input_with_source_positions(pipeline: Pipeline) -> None:
    values = [event(0), b"not json", event(2, content_type="movie"), event(3),
              event(4, event_type="content.deleted", title=None)]
    values[4] = orjson.dumps({k: v for k, v in orjson.loads(values[4]).items() if v is not None})
    out = process_batch(pipeline, [message(i, v) for i, v in enumerate(values)])
    signals = [wire(r) for r in out.signals]
    letters = [wire(r) for r in out.dead_letters]
    assert sorted([s["source"]["offset"] for s in signals] +
                  [d["source"]["offset"] for d in letters]) == [0, 1, 2, 3, 4]
    assert [s["event_id"] for s in signals] == ["e-0", "e-3", "e-4"]
    assert [d["error"]["class"] for d in letters] == ["invalid_json", "schema_violation"]
    deleted = signals[2]
    assert deleted["signals"] == {} and "embedding" not in deleted and deleted["models"] == {}
    assert len(out.enriched) == 2                       # the deleted item has nothing to fold
    assert all(s["models"]["embedding"] == pipeline.enricher.versions["embedding"]
               for s in signals[:2])


def test_batch_stats_count_what_the_records_say(pipeline: Pipeline) -> None:
    """The plain data the worker turns into metrics agrees with the records of the batch."""
    values = [event(0), b"not json", event(2, content_type="movie"),
              orjson.dumps({"event_id": "e-3", "event_type": "comment.created",
                            "content_id": "c-3", "content_type": "comment",
                            "event_time": "2026-01-05T10:00:00Z",
                            "text": "WIN a FREE iPhone!!! click bit.ly/free now"})]
    out = process_batch(pipeline, [message(i, v) for i, v in enumerate(values)])
    signals = [wire(r) for r in out.signals]
    assert out.stats.dead_letters == {"invalid_json": 1, "schema_violation": 1}
    expected_labels = Counter((task, s["model"], s["label"])
                              for signal in signals for task, s in signal["signals"].items())
    assert out.stats.labels == expected_labels
    assert out.stats.flags == Counter(f for signal in signals for f in signal["flags"])
    versions = pipeline.enricher.versions
    assert set(out.stats.model_seconds) == {(task, versions[task]) for task, _, _ in
                                            expected_labels} | {("embedding",
                                                                 versions["embedding"])}
    assert all(seconds > 0 for seconds in out.stats.model_seconds.values())


def test_signal_values_are_deterministic_apart_from_processing(pipeline: Pipeline) -> None:
    batch = [message(i, event(i)) for i in range(4)]
    first, second = process_batch(pipeline, batch), process_batch(pipeline, batch)
    strip = [{k: v for k, v in wire(r).items() if k != "processing"}
             for r in first.signals]
    again = [{k: v for k, v in wire(r).items() if k != "processing"}
             for r in second.signals]
    assert strip == again
    assert [r.key for r in first.signals] == [b"c-0", b"c-1", b"c-2", b"c-3"]


class PoisonedEnricher:
    """The real enricher, except that it fails on chosen event ids (a stand-in for a model that
    breaks on one pathological input)."""

    def __init__(self, real: Enricher, poison: set[str]) -> None:
        self.real, self.poison = real, poison
        self.versions = real.versions

    def enrich(self, events: Sequence[ContentEvent],
               timings: ModelTimings | None = None) -> list[Enrichment]:
        if any(e.event_id in self.poison for e in events):
            raise RuntimeError("model failed on this input")
        return self.real.enrich(events, timings)


def test_an_event_that_breaks_a_model_is_dead_lettered_alone(pipeline: Pipeline) -> None:
    poisoned = dataclasses.replace(
        pipeline, enricher=PoisonedEnricher(pipeline.enricher, {"e-1"}))  # type: ignore[arg-type]
    out = process_batch(poisoned, [message(i, event(i)) for i in range(3)])
    assert [wire(r)["event_id"] for r in out.signals] == ["e-0", "e-2"]
    [letter] = [wire(r) for r in out.dead_letters]
    assert letter["error"]["class"] == "processing_error"
    assert letter["source"]["offset"] == 1
    assert "model failed on this input" in letter["error"]["message"]
    assert out.stats.dead_letters == {"processing_error": 1}


def test_a_broken_model_stops_the_batch_instead_of_dead_lettering_everything(
    pipeline: Pipeline
) -> None:
    broken = dataclasses.replace(
        pipeline, enricher=PoisonedEnricher(pipeline.enricher, {"e-0", "e-1"}))  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="model failed"):
        process_batch(broken, [message(i, event(i)) for i in range(2)])


@pytest.mark.parametrize(("value", "readable"), [
    (b'{"title": "caf\xc3\xa9"}', '{"title": "café"}'),
    (b"caf\xe9", None),                                     # not UTF-8
    (b"x" * DLQ_UTF8_MAX_BYTES, "x" * DLQ_UTF8_MAX_BYTES),
    (b"x" * (DLQ_UTF8_MAX_BYTES + 1), None),                # large: base64 only
])
def test_a_dead_letter_keeps_the_bytes_whole_and_a_readable_copy_when_small(
        value: bytes, readable: str | None) -> None:
    message = RawMessage(value=value, position=Position("content.events.v1", 0, 5))
    letter = wire(dead_letter(message, Rejection(RejectReason.TOO_LARGE, "big")))
    assert base64.b64decode(letter["original"]["value_b64"]) == value
    assert letter["original"]["value_utf8"] == readable


@pytest.mark.parametrize("size", [DLQ_ORIGINAL_MAX_BYTES + 1, 24 * 1024 * 1024])
def test_an_original_too_large_to_copy_leaves_a_dead_letter_that_fits_and_finds_it(
        size: int) -> None:
    """A dead letter must always be writable (else the enrich agent would fail on the same
    offset forever): above 2 MiB it carries size, sha256, first bytes and the source position."""
    value = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    message = RawMessage(value=value, position=Position("content.events.v1", 3, 77), key=b"k")
    out = serialise(dead_letter(message, Rejection(RejectReason.TOO_LARGE, "big")))
    assert len(out.value) < DLQ_MAX_MESSAGE_BYTES // 2
    letter = orjson.loads(out.value)
    assert letter["original"]["value_b64"] is None and letter["original"]["value_utf8"] is None
    oversized = letter["original"]["oversized"]
    assert oversized["size_bytes"] == size
    assert oversized["sha256"] == hashlib.sha256(value).hexdigest()
    assert base64.b64decode(oversized["head_b64"]) == value[:DLQ_HEAD_BYTES]
    assert (letter["source"]["partition"], letter["source"]["offset"]) == (3, 77)
    assert out.key == b"k"


def test_an_original_of_exactly_the_limit_is_still_copied_whole() -> None:
    value = b"y" * DLQ_ORIGINAL_MAX_BYTES
    letter = wire(dead_letter(RawMessage(value, Position("t", 0, 0)),
                              Rejection(RejectReason.TOO_LARGE, "big")))
    assert base64.b64decode(letter["original"]["value_b64"]) == value
    assert "oversized" not in letter["original"]
