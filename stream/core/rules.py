"""Signal rules: plain functions that derive flags and aggregation groups from model signals."""

from __future__ import annotations

from stream.core.outputs import Signals
from stream.core.records import ContentEvent

UNKNOWN_MARKET = "ZZ"  # ISO 3166 user-assigned code for "unknown or unspecified"
UNKNOWN_TOPIC = "unknown"


def aggregation_group(event: ContentEvent, signals: Signals) -> str:
    """The key windows are aggregated by: topic label × market.

    The topic applies to shows, episodes and audiobooks; tracks and comments (and any item whose
    topic signal is unreliable, e.g. non-English text) are grouped by content type instead.
    """
    market = event.market or UNKNOWN_MARKET
    topic = signals.get("topic")
    if event.content_type in ("track", "comment") or topic is None:
        return f"content_type={event.content_type}|market={market}"
    label = topic.label if topic.is_reliable else UNKNOWN_TOPIC
    return f"topic={label}|market={market}"


def flags_for(signals: Signals) -> tuple[str, ...]:
    """Flags raised by thresholded labels: ``spam``, ``safety:offensive``, ``safety:hate`` ..."""
    flags = []
    for task, signal in signals.items():
        for label in signal.flagged or ():
            flags.append(task if label == task else f"{task}:{label}")
    return tuple(sorted(flags))
