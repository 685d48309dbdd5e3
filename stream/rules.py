"""Signal rules: plain functions that derive flags and aggregation groups from model signals."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stream.records import ContentEvent

UNKNOWN_MARKET = "ZZ"  # ISO 3166 user-assigned code for "unknown or unspecified"


def aggregation_group(event: ContentEvent, signals: Mapping[str, Mapping[str, Any]]) -> str:
    """The key windows are aggregated by: topic label × market once a topic model ran,
    content type × market before that."""
    market = event.market or UNKNOWN_MARKET
    topic = signals.get("topic")
    if topic is not None:
        return f"topic={topic['label']}|market={market}"
    return f"content_type={event.content_type}|market={market}"


def flags_for(signals: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Names of the signals whose model marked the item as flagged (e.g. unsafe, spam)."""
    return sorted(task for task, signal in signals.items() if signal.get("flagged"))
