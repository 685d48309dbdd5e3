"""The records the core produces, typed: a `Signal` per model and item, and one class per output.

`process_batch` returns these objects; only a sink turns them into bytes (`serialise`), so
in-process callers (eval, replay, the logs) read fields instead of parsing their own output. Each
record's ``to_json`` is the one definition of its wire shape (``schemas/<topic>.json``): field
order included, so the bytes stay what consumers already read. The index stage's records
(``content.similar.v1``, ``content.clusters.v1``) are in `stream.similarity.records`.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import orjson

from stream.core.records import Position
from stream.errors import RejectReason

DUMPS_OPTIONS = orjson.OPT_SERIALIZE_NUMPY
DLQ_UTF8_MAX_BYTES = 65_536  # larger originals are kept in the dead letter as base64 only
# Larger originals are not copied into their dead letter at all (it could not be written: the
# dead-letter topic takes 4 MiB, base64 adds a third); it carries their size, sha256 and first
# bytes, and `source` says where the whole original stays in the input topic.
DLQ_ORIGINAL_MAX_BYTES = 2 * 1024 * 1024
DLQ_HEAD_BYTES = 4096


@dataclass(frozen=True, slots=True)
class Signal:
    """One model's answer for one item: ``{label, score, model[, scores, flagged, reliable]}``.

    The language model fills the first three; a head adds its per-label `scores` and the labels
    that reached their threshold (`flagged`); `reliable` is False when an English-only model
    read non-English text (it then flags nothing)."""

    label: str
    score: float
    model: str
    scores: dict[str, float] | None = None
    flagged: tuple[str, ...] | None = None
    reliable: bool | None = None

    @property
    def is_reliable(self) -> bool:
        return self.reliable is not False

    def unreliable(self) -> Signal:
        return dataclasses.replace(self, reliable=False, flagged=())

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"label": self.label, "score": self.score, "model": self.model}
        if self.scores is not None:
            out["scores"] = self.scores
        if self.flagged is not None:
            out["flagged"] = list(self.flagged)
        if self.reliable is not None:
            out["reliable"] = self.reliable
        return out


Signals = Mapping[str, Signal]


def signals_json(signals: Signals) -> dict[str, dict[str, Any]]:
    return {task: signal.to_json() for task, signal in signals.items()}


def position_json(where: Position) -> dict[str, Any]:
    return {"topic": where.topic, "partition": where.partition, "offset": where.offset}


class Record(Protocol):
    """What a sink can send: a partitioning key and a JSON value."""

    @property
    def key(self) -> bytes: ...

    def to_json(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class Processing:
    """Wall-clock metadata of a live signal, kept apart so replays stay deterministic."""

    processed_at_ms: int
    batch_ms: float
    end_to_end_ms: int | None

    def to_json(self) -> dict[str, Any]:
        return {"processed_at_ms": self.processed_at_ms, "batch_ms": self.batch_ms,
                "end_to_end_ms": self.end_to_end_ms}


@dataclass(frozen=True, slots=True)
class SignalRecord:
    """A ``content.signals.v1`` value, keyed by ``content_id``: one per valid input event."""

    event_id: str
    event_type: str
    content_id: str
    content_type: str
    event_time: str
    market: str | None
    signals: Signals
    flags: tuple[str, ...]
    models: Mapping[str, str]
    source: Position
    embedding: np.ndarray | None = None
    embedding_model: str | None = None
    replay_id: str | None = None
    processing: Processing | None = None

    @property
    def key(self) -> bytes:
        return self.content_id.encode()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "event_id": self.event_id, "event_type": self.event_type,
            "content_id": self.content_id, "content_type": self.content_type,
            "event_time": self.event_time, "market": self.market,
            "signals": signals_json(self.signals), "flags": list(self.flags),
            "models": dict(self.models), "source": position_json(self.source)}
        if self.embedding is not None:
            out["embedding"] = {"model": self.embedding_model,
                                "dim": int(self.embedding.shape[0]), "values": self.embedding}
        if self.replay_id:
            out["replay_id"] = self.replay_id
        if self.processing is not None:
            out["processing"] = self.processing.to_json()
        return out


@dataclass(frozen=True, slots=True)
class EnrichedRecord:
    """A ``content.enriched.v1`` value: what the aggregation stage needs, keyed by its group."""

    event_id: str
    event_type: str
    content_id: str
    content_type: str
    market: str | None
    creator_id: str | None
    event_time_ms: int
    group: str
    signals: Signals
    flags: tuple[str, ...]
    models: Mapping[str, str]
    source: Position

    @property
    def key(self) -> bytes:
        return self.group.encode()

    def to_json(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "event_type": self.event_type,
                "content_id": self.content_id, "content_type": self.content_type,
                "market": self.market, "creator_id": self.creator_id,
                "event_time_ms": self.event_time_ms, "group": self.group,
                "signals": signals_json(self.signals), "flags": list(self.flags),
                "models": dict(self.models), "source": position_json(self.source)}


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A ``content.events.dlq.v1`` value: the original bytes, where they came from, and why."""

    value: bytes
    original_key: bytes | None
    source: Position
    timestamp_ms: int | None
    reason: RejectReason
    message: str
    failed_at: str | None = None
    replay_id: str | None = None

    @property
    def key(self) -> bytes:
        return self.original_key or f"{self.source.topic}-{self.source.partition}".encode()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "original": original_json(self.value, self.original_key),
            "source": {**position_json(self.source), "timestamp_ms": self.timestamp_ms},
            "error": {"class": self.reason.value, "message": self.message}}
        if self.failed_at is not None:
            out["failed_at"] = self.failed_at
        if self.replay_id:
            out["replay_id"] = self.replay_id
        return out


def original_json(value: bytes, key: bytes | None) -> dict[str, Any]:
    """The original message in a dead letter: whole (base64, and as text when it is short UTF-8),
    or, above `DLQ_ORIGINAL_MAX_BYTES`, its size, sha256 and first `DLQ_HEAD_BYTES` bytes."""
    key_b64 = base64.b64encode(key).decode() if key else None
    if len(value) <= DLQ_ORIGINAL_MAX_BYTES:
        return {"value_b64": base64.b64encode(value).decode(),
                "value_utf8": readable_copy(value), "key_b64": key_b64}
    return {"value_b64": None, "value_utf8": None, "key_b64": key_b64,
            "oversized": {"size_bytes": len(value), "sha256": hashlib.sha256(value).hexdigest(),
                          "head_b64": base64.b64encode(value[:DLQ_HEAD_BYTES]).decode()}}


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


@dataclass(frozen=True, slots=True)
class ShadowRecord:
    """A ``content.shadow.v1`` value: one item's answers from a champion and its challenger."""

    task: str
    event_time_ms: int
    event_id: str
    content_id: str
    champion: Signal
    challenger: Signal

    @property
    def key(self) -> bytes:
        return self.task.encode()

    def to_json(self) -> dict[str, Any]:
        sides = {role: {"model": s.model, "label": s.label, "scores": s.scores or {}}
                 for role, s in (("champion", self.champion), ("challenger", self.challenger))}
        return {"task": self.task, "event_time_ms": self.event_time_ms,
                "event_id": self.event_id, "content_id": self.content_id, **sides}


@dataclass(frozen=True, slots=True)
class WindowRecord:
    """A closed window (``signals.windows.v1``, ``signals.model_eval.v1``) keyed by one of its
    fields. Window aggregates are JSON objects because that is what their changelog stores."""

    value: dict[str, Any]
    key_field: str = "group"

    @property
    def key(self) -> bytes:
        return str(self.value[self.key_field]).encode()

    def to_json(self) -> dict[str, Any]:
        return self.value


@dataclass(frozen=True, slots=True)
class EmbeddingRecord:
    """A ``content.embeddings.v1`` value (compacted, keyed by ``content_id``): the latest vector of
    each item, the log the similarity index is rebuilt from. A ``content.deleted`` event is a
    tombstone (`vector` None: a null value), so compaction forgets the item too."""

    event_id: str
    content_id: str
    content_type: str
    event_time_ms: int
    model: str
    vector: np.ndarray | None
    creator_id: str | None = None
    show_id: str | None = None

    @property
    def key(self) -> bytes:
        return self.content_id.encode()

    @property
    def is_tombstone(self) -> bool:
        return self.vector is None

    def to_json(self) -> dict[str, Any]:
        assert self.vector is not None, "a tombstone has no value; serialise() writes None"
        values = np.asarray(self.vector, dtype="<f4")
        return {"event_id": self.event_id, "content_id": self.content_id,
                "content_type": self.content_type, "event_time_ms": self.event_time_ms,
                "creator_id": self.creator_id, "show_id": self.show_id,
                "embedding": {"model": self.model, "dim": int(values.shape[0]),
                              "dtype": "float32-le",
                              "b64": base64.b64encode(values.tobytes()).decode()}}

    @classmethod
    def from_message(cls, key: bytes | None, value: bytes | None) -> EmbeddingRecord:
        """Read one message of the topic back (a null value is a tombstone of its key)."""
        if value is None:
            return cls("", (key or b"").decode(), "", 0, "", None)
        data = orjson.loads(value)
        emb = data["embedding"]
        vector = np.frombuffer(base64.b64decode(emb["b64"]), dtype="<f4").astype(np.float32)
        return cls(data["event_id"], data["content_id"], data["content_type"],
                   int(data["event_time_ms"]), emb["model"], vector, data.get("creator_id"),
                   data.get("show_id"))


@dataclass(frozen=True, slots=True)
class OutRecord:
    """A record as a sink writes it: key and value bytes."""

    key: bytes
    value: bytes | None   # None: a tombstone (compacted topics)


def serialise(record: Record) -> OutRecord:
    if isinstance(record, EmbeddingRecord) and record.is_tombstone:
        return OutRecord(record.key, None)
    return OutRecord(record.key, dumps(record.to_json()))


def dumps(value: dict[str, Any]) -> bytes:
    return orjson.dumps(value, option=DUMPS_OPTIONS)
