"""One micro-batch through the whole pure core: validate → enrich → output records.

`process_batch` is the single code path shared by the Faust worker, `signals replay`, `signals eval`
and the benchmarks. It takes raw messages and returns the records to produce; it never talks to
Kafka. Every input message yields exactly one signal record or one dead letter.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog

from stream.core.enrich import Enricher, Enrichment
from stream.core.records import ContentEvent, RawMessage
from stream.core.rules import aggregation_group, flags_for
from stream.core.validate import Validator
from stream.errors import Rejection, RejectReason
from stream.models.shadow import shadow_record

DUMPS_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
DLQ_UTF8_MAX_BYTES = 65_536  # larger originals are kept in the dead letter as base64 only
log = structlog.get_logger("stream.core.pipeline")


@dataclass(frozen=True, slots=True)
class OutRecord:
    key: bytes
    value: bytes


@dataclass(slots=True)
class BatchOutput:
    signals: list[OutRecord] = field(default_factory=list)
    enriched: list[OutRecord] = field(default_factory=list)
    dead_letters: list[OutRecord] = field(default_factory=list)
    shadow: list[OutRecord] = field(default_factory=list)  # champion vs challenger, keyed by task


@dataclass(frozen=True, slots=True)
class Pipeline:
    """What `process_batch` needs: the validator, the loaded models and the output options."""

    validate: Validator
    enricher: Enricher
    include_embedding: bool = True
    run_id: str | None = None  # set by replay; goes into every record it writes
    include_processing: bool = True  # wall-clock fields; replay drops them to stay deterministic


def process_batch(pipeline: Pipeline, messages: Sequence[RawMessage]) -> BatchOutput:
    started = time.monotonic()
    output = BatchOutput()
    events: list[tuple[RawMessage, ContentEvent]] = []
    for message in messages:
        checked = pipeline.validate(message.value, message.timestamp_ms)
        if isinstance(checked, Rejection):
            output.dead_letters.append(dead_letter(message, checked, pipeline))
        else:
            events.append((message, checked))
    enriched_events = enrich_isolating_failures(pipeline, events, output)
    elapsed_ms = (time.monotonic() - started) * 1000
    now_ms = int(time.time() * 1000)
    for message, event, enrichment in enriched_events:
        record = signal_record(pipeline, message, event, enrichment)
        if pipeline.include_processing:
            record["processing"] = processing_info(message, now_ms, elapsed_ms)
        output.signals.append(OutRecord(event.content_id.encode(), dumps(record)))
        if event.has_text:
            enriched = enriched_record(pipeline, message, event, enrichment)
            output.enriched.append(OutRecord(enriched["group"].encode(), dumps(enriched)))
        for task, challenger in enrichment.shadow.items():
            champion = enrichment.signals.get(task)
            if champion is not None:   # compared only where the champion ran too
                shadow = shadow_record(task, event.event_time_ms, champion, challenger,
                                       event_id=event.event_id, content_id=event.content_id)
                output.shadow.append(OutRecord(task.encode(), dumps(shadow)))
    return output


def enrich_isolating_failures(
    pipeline: Pipeline, events: list[tuple[RawMessage, ContentEvent]], output: BatchOutput
) -> list[tuple[RawMessage, ContentEvent, Enrichment]]:
    """Enrich the batch in one go; if that raises, retry item by item so one pathological input
    goes to the DLQ (``processing_error``) instead of failing its batch mates. When every item
    fails on its own too, the fault is not in the data (e.g. a broken model): re-raise, so the
    worker stops before committing offsets and nothing is lost."""
    enricher = pipeline.enricher
    try:
        enrichments = enricher.enrich([event for _, event in events])
        return [(m, e, x) for (m, e), x in zip(events, enrichments, strict=True)]
    except Exception as batch_error:
        log.warning("batch_enrichment_failed", error=repr(batch_error), size=len(events))
        done: list[tuple[RawMessage, ContentEvent, Enrichment]] = []
        failed: list[OutRecord] = []
        for message, event in events:
            try:
                done.append((message, event, enricher.enrich([event])[0]))
            except Exception as item_error:
                failed.append(dead_letter(message, Rejection(
                    RejectReason.PROCESSING, f"{type(item_error).__name__}: {item_error}"),
                    pipeline))
        if events and not done:
            raise
        output.dead_letters.extend(failed)
        return done


def signal_record(pipeline: Pipeline, message: RawMessage, event: ContentEvent,
                  enrichment: Enrichment) -> dict[str, Any]:
    """The deterministic part of a ``content.signals.v1`` value (same input, same models → same)."""
    record: dict[str, Any] = {
        "event_id": event.event_id, "event_type": event.event_type,
        "content_id": event.content_id, "content_type": event.content_type,
        "event_time": event.event_time, "market": event.market,
        "signals": enrichment.signals, "flags": flags_for(enrichment.signals),
        "models": pipeline.enricher.versions if event.has_text else {},
        "source": {"topic": message.position.topic, "partition": message.position.partition,
                   "offset": message.position.offset},
    }
    if pipeline.include_embedding and enrichment.embedding is not None:
        record["embedding"] = {"model": pipeline.enricher.versions["embedding"],
                               "dim": int(enrichment.embedding.shape[0]),
                               "values": enrichment.embedding}
    if pipeline.run_id:
        record["replay_id"] = pipeline.run_id
    return record


def enriched_record(pipeline: Pipeline, message: RawMessage, event: ContentEvent,
                    enrichment: Enrichment) -> dict[str, Any]:
    """The ``content.enriched.v1`` value: what the aggregation stage needs, keyed by its group.
    ``source`` is the input position: the window folds skip a record whose source offset they
    already folded (a batch re-sent after a crash), so the aggregates count each input once."""
    return {
        "event_id": event.event_id, "event_type": event.event_type,
        "content_id": event.content_id, "content_type": event.content_type,
        "market": event.market, "creator_id": event.creator_id,
        "event_time_ms": event.event_time_ms,
        "group": aggregation_group(event, enrichment.signals),
        "signals": enrichment.signals, "flags": flags_for(enrichment.signals),
        "models": pipeline.enricher.versions,
        "source": {"topic": message.position.topic, "partition": message.position.partition,
                   "offset": message.position.offset},
    }


def processing_info(message: RawMessage, now_ms: int, batch_ms: float) -> dict[str, Any]:
    """Non-deterministic metadata, kept apart so replays can be compared without it."""
    queued = now_ms - message.timestamp_ms if message.timestamp_ms is not None else None
    return {"processed_at_ms": now_ms, "batch_ms": round(batch_ms, 3), "end_to_end_ms": queued}


def dead_letter(message: RawMessage, rejection: Rejection,
                pipeline: Pipeline | None = None) -> OutRecord:
    """A ``content.events.dlq.v1`` record: the original bytes, where they came from, and why."""
    value = message.value or b""
    text = readable_copy(value)
    record = {
        "original": {"value_b64": base64.b64encode(value).decode(), "value_utf8": text,
                     "key_b64": base64.b64encode(message.key).decode() if message.key else None},
        "source": {"topic": message.position.topic, "partition": message.position.partition,
                   "offset": message.position.offset, "timestamp_ms": message.timestamp_ms},
        "error": {"class": rejection.reason.value, "message": rejection.message},
    }
    if pipeline is None or pipeline.include_processing:
        record["failed_at"] = datetime.now(UTC).isoformat(timespec="milliseconds")
    if pipeline is not None and pipeline.run_id:
        record["replay_id"] = pipeline.run_id
    key = message.key or f"{message.position.topic}-{message.position.partition}".encode()
    return OutRecord(key, dumps(record))


def readable_copy(value: bytes) -> str | None:
    """The original as text for people, when it is UTF-8 and at most `DLQ_UTF8_MAX_BYTES`; the
    base64 copy always holds it whole. One copy only for large messages keeps a dead letter under
    the dead-letter topic's size limit (`stream.connectors.kafka.DLQ_MAX_MESSAGE_BYTES`)."""
    if len(value) > DLQ_UTF8_MAX_BYTES:
        return None
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return None


def dumps(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record, option=DUMPS_OPTIONS)
