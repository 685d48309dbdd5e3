"""Signal rules: plain functions that derive flags and aggregation groups from model signals."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stream.core.records import ContentEvent

UNKNOWN_MARKET = "ZZ"  # ISO 3166 user-assigned code for "unknown or unspecified"
UNKNOWN_TOPIC = "unknown"


def aggregation_group(event: ContentEvent, signals: Mapping[str, Mapping[str, Any]]) -> str:
    """The key windows are aggregated by: topic label × market.

    The topic applies to shows, episodes and audiobooks; tracks and comments (and any item whose
    topic signal is unreliable, e.g. non-English text) are grouped by content type instead.
    """
    market = event.market or UNKNOWN_MARKET
    topic = signals.get("topic")
    if event.content_type in ("track", "comment") or topic is None:
        return f"content_type={event.content_type}|market={market}"
    label = topic["label"] if topic.get("reliable", True) else UNKNOWN_TOPIC
    return f"topic={label}|market={market}"


def flags_for(signals: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Flags raised by thresholded labels: ``spam``, ``safety:offensive``, ``safety:hate`` ..."""
    flags = []
    for task, signal in signals.items():
        for label in signal.get("flagged", ()):
            flags.append(task if label == task else f"{task}:{label}")
    return sorted(flags)
