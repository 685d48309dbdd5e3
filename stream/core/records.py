"""Plain records that flow between the pure stages. No Kafka, no Faust, no models in here.

`RawMessage` is what arrives (bytes plus where they came from), `ContentEvent` is a
validated event, and the ``*_record`` dicts built by `stream.core.pipeline` are what leaves
(serialised with orjson).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Position:
    """Where a message sits in Kafka (or in a file: topic is the file name, offset the line)."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class RawMessage:
    """One input message as read: the value's bytes untouched, so a dead letter keeps them."""

    value: bytes | None
    position: Position
    key: bytes | None = None
    timestamp_ms: int | None = None


@dataclass(frozen=True, slots=True)
class ContentEvent:
    """A validated content event (schemas/content.events.v1.json)."""

    event_id: str
    event_type: str
    content_id: str
    content_type: str
    event_time: str
    event_time_ms: int
    title: str = ""
    description: str = ""
    text: str = ""
    creator_id: str | None = None
    show_id: str | None = None
    market: str | None = None
    language: str | None = None
    tags: tuple[str, ...] = field(default_factory=tuple)
    producer: str | None = None

    @property
    def model_text(self) -> str:
        """The text the models read: the non-empty text fields joined, title first."""
        parts = (self.title.strip(), self.description.strip(), self.text.strip())
        return ". ".join(p for p in parts if p)

    @property
    def has_text(self) -> bool:
        return bool(self.model_text)
