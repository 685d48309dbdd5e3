"""structlog set-up: one JSON object per line (or readable console lines), for our logs and for
the stdlib loggers of Faust, aiokafka and kafka-python alike."""

from __future__ import annotations

import logging.config
from collections.abc import Sequence
from typing import Any

import orjson
import structlog

from stream.core.outputs import DLQ_UTF8_MAX_BYTES, DeadLetter, SignalRecord
from stream.core.records import RawMessage
from stream.settings import Settings
from stream.worker.noise import RepeatFilter

_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def logging_config(settings: Settings) -> dict[str, Any]:
    """A `logging.config.dictConfig` mapping; the Faust worker is given the same one."""
    renderer: Any = (structlog.processors.JSONRenderer() if settings.log_format == "json"
                     else structlog.dev.ConsoleRenderer(colors=False))
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"structured": {
            "()": structlog.stdlib.ProcessorFormatter,
            "foreign_pre_chain": _SHARED,
            "processors": [structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                           structlog.processors.format_exc_info, renderer],
        }},
        # one line per kind of library complaint per 10 s, with a count (stream/worker/noise.py)
        "filters": {"repeats": {"()": RepeatFilter, "interval_s": 10.0}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "structured",
                                "stream": "ext://sys.stderr", "filters": ["repeats"]}},
        "root": {"handlers": ["stderr"], "level": settings.log_level.upper()},
        "loggers": {name: {"level": "WARNING"} for name in ("aiokafka", "kafka", "faust", "mode")},
    }


def configure_logging(settings: Settings) -> None:
    logging.config.dictConfig(logging_config(settings))
    structlog.configure(
        processors=[*_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # not cached: a tool that configures logging in-process (eval --from-topic, replay)
        # must leave module loggers that structlog.testing.capture_logs can still observe
        cache_logger_on_first_use=False,
    )


BATCH_LOGGER = "stream.batches"


def log_batch(messages: Sequence[RawMessage], signals: Sequence[SignalRecord],
              dead_letters: Sequence[DeadLetter]) -> None:
    """One INFO line per micro-batch (its offset ranges per partition), one WARNING line per dead
    letter, and, at DEBUG, one line per signal: event id, content id, flags and source offset."""
    logger = structlog.get_logger(BATCH_LOGGER)
    logger.info("batch_processed", size=len(messages), signals=len(signals),
                dead_letters=len(dead_letters), offsets=offset_ranges(messages))
    for letter in dead_letters:
        where = letter.source
        logger.warning("dead_letter", reason=letter.reason.value, detail=letter.message,
                       event_id=dead_letter_event_id(letter), topic=where.topic,
                       partition=where.partition, offset=where.offset,
                       timestamp_ms=letter.timestamp_ms)
    if logging.getLogger(BATCH_LOGGER).isEnabledFor(logging.DEBUG):
        for record in signals:
            logger.debug("signal_emitted", event_id=record.event_id, content_id=record.content_id,
                         flags=list(record.flags), topic=record.source.topic,
                         partition=record.source.partition, offset=record.source.offset)


def offset_ranges(messages: Sequence[RawMessage]) -> list[dict[str, Any]]:
    """A batch from ``take_events`` can mix partitions: the first and last offset of each."""
    ranges: dict[tuple[str, int], dict[str, Any]] = {}
    for message in messages:
        where = message.position
        found = ranges.setdefault((where.topic, where.partition), {
            "topic": where.topic, "partition": where.partition, "first_offset": where.offset,
            "last_offset": where.offset, "count": 0})
        found["first_offset"] = min(found["first_offset"], where.offset)
        found["last_offset"] = max(found["last_offset"], where.offset)
        found["count"] += 1
    return list(ranges.values())


def dead_letter_event_id(letter: DeadLetter) -> str | None:
    """The rejected event's ``event_id`` when its bytes were JSON with a string id, else None."""
    if len(letter.value) > DLQ_UTF8_MAX_BYTES:
        return None
    try:
        event = orjson.loads(letter.value)
    except orjson.JSONDecodeError:
        return None
    event_id = event.get("event_id") if isinstance(event, dict) else None
    return event_id if isinstance(event_id, str) else None
