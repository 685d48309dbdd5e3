"""One micro-batch through the whole pure core: validate → enrich → output records.

`process_batch` is the single code path shared by the Faust worker, `signals replay`, `signals eval`
and the benchmarks. It takes raw messages and returns the records to produce; it never talks to
Kafka. Every input message yields exactly one signal record or one dead letter.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog

from stream.core.enrich import Enricher, Enrichment
from stream.core.outputs import (
    DeadLetter,
    EmbeddingRecord,
    EnrichedRecord,
    Processing,
    ShadowRecord,
    SignalRecord,
)
from stream.core.records import ContentEvent, RawMessage
from stream.core.rules import aggregation_group, flags_for
from stream.core.validate import Validator
from stream.errors import Rejection, RejectReason

log = structlog.get_logger("stream.core.pipeline")


@dataclass(slots=True)
class BatchStats:
    """What the operator counts about one batch, as plain data (the worker turns it into metrics,
    the core knows nothing of Prometheus)."""

    model_seconds: dict[tuple[str, str], float] = field(default_factory=dict)  # (task, version)
    labels: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (task, version, label)
    flags: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)  # by error class


@dataclass(slots=True)
class BatchOutput:
    signals: list[SignalRecord] = field(default_factory=list)
    enriched: list[EnrichedRecord] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    shadow: list[ShadowRecord] = field(default_factory=list)  # champion vs challenger, by task
    stats: BatchStats = field(default_factory=BatchStats)
    embeddings: list[EmbeddingRecord] = field(default_factory=list)  # the index's log; tombstones


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
            output.stats.dead_letters[checked.reason.value] += 1
        else:
            events.append((message, checked))
    enriched_events = enrich_isolating_failures(pipeline, events, output)
    elapsed_ms = (time.monotonic() - started) * 1000
    now_ms = int(time.time() * 1000)
    for message, event, enrichment in enriched_events:
        processing = (processing_info(message, now_ms, elapsed_ms)
                      if pipeline.include_processing else None)
        signal = signal_record(pipeline, message, event, enrichment, processing)
        output.signals.append(signal)
        count_predictions(output.stats, signal)
        if event.has_text:
            output.enriched.append(enriched_record(pipeline, message, event, enrichment))
        embedding = embedding_record(pipeline, event, enrichment)
        if embedding is not None:
            output.embeddings.append(embedding)
        for task, challenger in enrichment.shadow.items():
            champion = enrichment.signals.get(task)
            if champion is not None:   # compared only where the champion ran too
                output.shadow.append(ShadowRecord(
                    task, event.event_time_ms, event.event_id, event.content_id, champion,
                    challenger))
    return output


def enrich_isolating_failures(
    pipeline: Pipeline, events: list[tuple[RawMessage, ContentEvent]], output: BatchOutput
) -> list[tuple[RawMessage, ContentEvent, Enrichment]]:
    """Enrich the batch in one go; if that raises, retry item by item so one pathological input
    goes to the DLQ (``processing_error``) instead of failing its batch mates. When every item
    fails on its own too, the fault is not in the data (e.g. a broken model): re-raise, so the
    worker stops before committing offsets and nothing is lost."""
    enricher, timings = pipeline.enricher, output.stats.model_seconds
    try:
        enrichments = enricher.enrich([event for _, event in events], timings)
        return [(m, e, x) for (m, e), x in zip(events, enrichments, strict=True)]
    except Exception as batch_error:
        log.warning("batch_enrichment_failed", error=repr(batch_error), size=len(events))
        done: list[tuple[RawMessage, ContentEvent, Enrichment]] = []
        failed: list[DeadLetter] = []
        for message, event in events:
            try:
                done.append((message, event, enricher.enrich([event], timings)[0]))
            except Exception as item_error:
                failed.append(dead_letter(message, Rejection(
                    RejectReason.PROCESSING, f"{type(item_error).__name__}: {item_error}"),
                    pipeline))
                output.stats.dead_letters[RejectReason.PROCESSING.value] += 1
        if events and not done:
            raise
        output.dead_letters.extend(failed)
        return done


def count_predictions(stats: BatchStats, record: SignalRecord) -> None:
    for task, signal in record.signals.items():
        stats.labels[(task, signal.model, signal.label)] += 1
    stats.flags.update(record.flags)


def signal_record(pipeline: Pipeline, message: RawMessage, event: ContentEvent,
                  enrichment: Enrichment, processing: Processing | None = None) -> SignalRecord:
    """A ``content.signals.v1`` record; all but `processing` is deterministic (same input, same
    models → same record)."""
    versions = pipeline.enricher.versions
    embedding = enrichment.embedding if pipeline.include_embedding else None
    return SignalRecord(
        event_id=event.event_id, event_type=event.event_type, content_id=event.content_id,
        content_type=event.content_type, event_time=event.event_time, market=event.market,
        signals=enrichment.signals, flags=flags_for(enrichment.signals),
        models=versions if event.has_text else {}, source=message.position,
        embedding=embedding, embedding_model=versions["embedding"],
        replay_id=pipeline.run_id, processing=processing)


def enriched_record(pipeline: Pipeline, message: RawMessage, event: ContentEvent,
                    enrichment: Enrichment) -> EnrichedRecord:
    """The ``content.enriched.v1`` record: what the aggregation stage needs, keyed by its group.
    ``source`` is the input position: the window folds skip a record whose source offset they
    already folded (a batch re-sent after a crash), so the aggregates count each input once."""
    return EnrichedRecord(
        event_id=event.event_id, event_type=event.event_type, content_id=event.content_id,
        content_type=event.content_type, market=event.market, creator_id=event.creator_id,
        event_time_ms=event.event_time_ms, group=aggregation_group(event, enrichment.signals),
        signals=enrichment.signals, flags=flags_for(enrichment.signals),
        models=pipeline.enricher.versions, source=message.position)


def embedding_record(pipeline: Pipeline, event: ContentEvent,
                     enrichment: Enrichment) -> EmbeddingRecord | None:
    """The ``content.embeddings.v1`` record: the item's vector, or a tombstone for a deletion."""
    deleted = event.event_type == "content.deleted"
    if not deleted and enrichment.embedding is None:
        return None
    return EmbeddingRecord(
        event_id=event.event_id, content_id=event.content_id, content_type=event.content_type,
        event_time_ms=event.event_time_ms, model=pipeline.enricher.versions["embedding"],
        vector=None if deleted else enrichment.embedding, creator_id=event.creator_id,
        show_id=event.show_id)


def processing_info(message: RawMessage, now_ms: int, batch_ms: float) -> Processing:
    """Non-deterministic metadata, kept apart so replays can be compared without it."""
    queued = now_ms - message.timestamp_ms if message.timestamp_ms is not None else None
    return Processing(processed_at_ms=now_ms, batch_ms=round(batch_ms, 3), end_to_end_ms=queued)


def dead_letter(message: RawMessage, rejection: Rejection,
                pipeline: Pipeline | None = None) -> DeadLetter:
    """A ``content.events.dlq.v1`` record: the original bytes, where they came from, and why."""
    live = pipeline is None or pipeline.include_processing
    return DeadLetter(
        value=message.value or b"", original_key=message.key, source=message.position,
        timestamp_ms=message.timestamp_ms, reason=rejection.reason, message=rejection.message,
        failed_at=datetime.now(UTC).isoformat(timespec="milliseconds") if live else None,
        replay_id=pipeline.run_id if pipeline is not None else None)
