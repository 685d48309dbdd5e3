"""The batch log lines: offset ranges per partition, dead letters with their event ids, and one
DEBUG line per signal only when DEBUG is on."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from structlog.testing import capture_logs

from stream.core.outputs import SignalRecord
from stream.core.pipeline import dead_letter
from stream.core.records import Position, RawMessage
from stream.errors import Rejection, RejectReason
from stream.worker.logs import BATCH_LOGGER, dead_letter_event_id, log_batch, offset_ranges


def message(partition: int, offset: int, value: bytes = b"{}") -> RawMessage:
    return RawMessage(value=value, position=Position("content.events.v1", partition, offset))


def signal(event_id: str, partition: int, offset: int) -> SignalRecord:
    return SignalRecord(event_id=event_id, event_type="comment.created",
                        content_id=f"c-{event_id}", content_type="comment",
                        event_time="2026-01-01T00:00:00Z", market=None, signals={},
                        flags=("spam",), models={},
                        source=Position("content.events.v1", partition, offset))


@pytest.fixture
def debug_level() -> Iterator[None]:
    logger = logging.getLogger(BATCH_LOGGER)
    before = logger.level
    logger.setLevel(logging.DEBUG)
    yield
    logger.setLevel(before)


def test_offset_ranges_are_per_partition_whatever_the_order() -> None:
    batch = [message(1, 7), message(0, 3), message(1, 5), message(0, 4), message(1, 6)]
    assert offset_ranges(batch) == [
        {"topic": "content.events.v1", "partition": 1, "first_offset": 5, "last_offset": 7,
         "count": 3},
        {"topic": "content.events.v1", "partition": 0, "first_offset": 3, "last_offset": 4,
         "count": 2},
    ]


@pytest.mark.parametrize(("value", "expected"), [
    (b'{"event_id": "e-9", "content_type": "podcast"}', "e-9"),
    (b'{"event_id": 42}', None),
    (b"[1, 2]", None),
    (b"{not json", None),
    (b"\xff\xfe", None),
])
def test_a_dead_letter_names_its_event_id_when_the_bytes_have_one(
        value: bytes, expected: str | None) -> None:
    letter = dead_letter(message(0, 1, value), Rejection(RejectReason.SCHEMA, "bad"))
    assert dead_letter_event_id(letter) == expected


def test_batch_lines_carry_offsets_and_dead_letter_ids() -> None:
    rejected = message(0, 2, b'{"event_id": "e-2"}')
    letter = dead_letter(rejected, Rejection(RejectReason.SCHEMA, "content_type: not allowed"))
    with capture_logs() as logs:
        log_batch([message(0, 1), rejected], [signal("e-1", 0, 1)], [letter])
    assert [line["event"] for line in logs] == ["batch_processed", "dead_letter"]
    assert logs[0]["offsets"][0]["first_offset"] == 1 and logs[0]["offsets"][0]["count"] == 2
    assert logs[1]["event_id"] == "e-2" and logs[1]["offset"] == 2
    assert logs[1]["reason"] == RejectReason.SCHEMA.value


def test_one_debug_line_per_signal_only_at_debug(debug_level: None) -> None:
    with capture_logs() as logs:
        log_batch([message(0, 1), message(1, 9)], [signal("e-1", 0, 1), signal("e-9", 1, 9)], [])
    emitted = [line for line in logs if line["event"] == "signal_emitted"]
    assert [(line["event_id"], line["partition"], line["offset"]) for line in emitted] == [
        ("e-1", 0, 1), ("e-9", 1, 9)]
    assert emitted[0]["log_level"] == "debug" and emitted[0]["flags"] == ["spam"]


def test_no_per_signal_lines_at_info() -> None:
    logging.getLogger(BATCH_LOGGER).setLevel(logging.INFO)
    try:
        with capture_logs() as logs:
            log_batch([message(0, 1)], [signal("e-1", 0, 1)], [])
    finally:
        logging.getLogger(BATCH_LOGGER).setLevel(logging.NOTSET)
    assert [line["event"] for line in logs] == ["batch_processed"]
