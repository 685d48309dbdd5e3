"""The cascade: a cheap encoder's heads serve the items they are sure of; the others are encoded
again by a stronger encoder, whose heads serve them instead.

A profile with a cascade (the manifest's ``cascades``, e.g. ``SIGNALS_PROFILE=cascade``) runs its
own encoder (the static e5-static) and heads on every item, as the fast profile does. An item is
*escalated* when any of its reliable signals of a task named in ``min_confidence`` is less
confident than that task's minimum (`signal_confidence`); the escalation encoder (e5-small-v2)
then encodes the escalated items, and its heads' signals replace the cheap ones on them, every
task at once (the stronger embedding is paid for already). A signal's ``model`` says which head
served it. Unreliable signals (text in a language the English heads are not reliable in) are
left for the language tier, which runs after the cascade: a second English encoder cannot help.

The record's ``embedding`` stays the profile encoder's for every item, so the similarity index
keeps one vector space (and that encoder's near-duplicate calibration).

The minimums are chosen per task on the heads' training parts and scored on their validation
splits by ``models_onnx/training/cascade.py`` (MODELS.md "The cascade").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from stream.core.outputs import Signal, Signals
from stream.models.heads import ClassifierSpec


def signal_confidence(signal: Signal, head: ClassifierSpec, content_type: str | None) -> float:
    """How settled one head's decision on one item is: 0 on a decision boundary, 1 certain.

    The smallest of: for each thresholded label that applies to `content_type` (safety's labels,
    spam), the probability's distance from its threshold as a share of the room on that side;
    for a single-label head, the margin between its two most probable labels that no threshold
    gates. A signal without per-label scores (the language model's) counts as certain."""
    scores = signal.scores
    if not scores:
        return 1.0
    parts = [distance(scores[label], t) for label, t in head.thresholds_for(content_type).items()]
    if not head.multi_label:
        free = sorted((p for label, p in scores.items() if label not in head.thresholds),
                      reverse=True)
        if len(free) >= 2:
            parts.append(free[0] - free[1])
    return max(0.0, min(parts, default=1.0))


def distance(p: float, threshold: float) -> float:
    """`p`'s distance from `threshold` as a share of the room on its side (0 to 1)."""
    room = 1.0 - threshold if p >= threshold else threshold
    return abs(p - threshold) / room if room > 0 else 1.0


def escalated_rows(per_item: Sequence[Signals], content_types: Sequence[str],
                   contracts: Mapping[str, ClassifierSpec],
                   min_confidence: Mapping[str, float]) -> list[int]:
    """The rows with a reliable signal of a task in `min_confidence` below its minimum."""
    rows = []
    for row, (signals, content_type) in enumerate(zip(per_item, content_types, strict=True)):
        for task, minimum in min_confidence.items():
            signal, contract = signals.get(task), contracts.get(task)
            if signal is None or contract is None or not signal.is_reliable:
                continue
            if signal_confidence(signal, contract, content_type) < minimum:
                rows.append(row)
                break
    return rows


def replace_signals(per_item: list[dict[str, Signal]], rows: Sequence[int],
                    served: Sequence[Mapping[str, Signal]]) -> None:
    """On each escalated row, every reliable signal of the stronger heads replaces the cheap one
    (the cheap one is kept where the stronger head did not run or is unreliable)."""
    for row, signals in zip(rows, served, strict=True):
        for task, signal in signals.items():
            if task in per_item[row] and signal.is_reliable:
                per_item[row][task] = signal
