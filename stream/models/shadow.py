"""Champion/challenger comparison in the stream: shadow records folded into windows.

For each event that a challenger model also scored, the enrich stage emits a *shadow record*
(``task``, the champion's and the challenger's label and per-label scores). The ``model_eval``
agent folds them per task into tumbling windows with the same `WindowAggregator` as the signal
windows, and when a window closes emits a ``signals.model_eval.v1`` record: agreement rate, label
distribution per model, and score drift as the population stability index (PSI) of each model's
predicted-label distribution and per-label score histograms against the reference distribution
stored with that model (``reference`` in its manifest entry).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from stream.errors import ModelFileError
from stream.models.manifest import Manifest
from stream.windows.aggregator import Folder, window_header
from stream.windows.kinds import WindowKind

BINS = 10  # score histograms: bin i holds scores in [i/BINS, (i+1)/BINS), the last one also 1.0
BIN_EDGES = [round(i / BINS, 1) for i in range(BINS + 1)]
ROLES = ("champion", "challenger")
_EPSILON = 1e-4


def empty_eval(spec: WindowKind, group: str, start_ms: int, partition: int) -> dict[str, Any]:
    return {**window_header(spec, group, start_ms, partition), "count": 0, "agree": 0,
            "models": {}, "labels": {r: {} for r in ROLES}, "histograms": {r: {} for r in ROLES}}


def fold_eval(aggregate: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """A new aggregate with one shadow record added (the input is not modified)."""
    agg = {**aggregate, "models": dict(aggregate["models"]),
           "labels": {r: dict(c) for r, c in aggregate["labels"].items()},
           "histograms": {r: {k: list(v) for k, v in h.items()}
                          for r, h in aggregate["histograms"].items()}}
    agg["count"] += 1
    agg["agree"] += int(record["champion"]["label"] == record["challenger"]["label"])
    for role in ROLES:
        side = record[role]
        agg["models"][role] = side["model"]
        agg["labels"][role][side["label"]] = agg["labels"][role].get(side["label"], 0) + 1
        for label, score in side["scores"].items():
            counts = agg["histograms"][role].setdefault(label, [0] * BINS)
            counts[score_bin(float(score))] += 1
    return agg


def score_bin(score: float) -> int:
    """The histogram bin of one probability (the one binning rule of windows and references)."""
    return min(max(int(score * BINS), 0), BINS - 1)


def score_histogram(scores: npt.ArrayLike) -> list[int]:
    """Counts per bin of many probabilities: `score_bin` of each, vectorised."""
    index = np.clip((np.asarray(scores, dtype=np.float64) * BINS).astype(np.int64), 0, BINS - 1)
    return [int(c) for c in np.bincount(index, minlength=BINS)]


def reference_distribution(probs: Mapping[str, npt.ArrayLike], predicted: Mapping[str, int],
                           population: str,
                           totals: Mapping[str, int] | None = None) -> dict[str, Any]:
    """The reference file of one model (``reference`` in its manifest entry; the training writes
    it from the validation split, `load_references` reads it): per label, the histogram of its
    probability, and the predicted-label distribution as counts and as fractions of all rows (or,
    for a multi-label head, of each label's own rows `totals`)."""
    labels = {}
    for label, p in probs.items():
        counts = score_histogram(p)
        n = int(np.size(p))
        labels[label] = {"n": n, "counts": counts,
                         "fractions": [round(c / max(n, 1), 4) for c in counts]}
    total = max(sum(predicted.values()), 1)
    fractions = {k: round(v / (totals[k] if totals else total), 4) for k, v in predicted.items()}
    return {"population": population, "bin_edges": BIN_EDGES, "labels": labels,
            "predicted": {"counts": dict(predicted), "fractions": fractions}}


def psi(actual: Mapping[str, float], expected: Mapping[str, float]) -> float:
    """Population stability index of two distributions over the same keys (smoothed)."""
    keys = sorted(set(actual) | set(expected))
    a = np.array([actual.get(k, 0.0) for k in keys], dtype=float)
    e = np.array([expected.get(k, 0.0) for k in keys], dtype=float)
    a = (a + _EPSILON) / (a.sum() + _EPSILON * len(keys))
    e = (e + _EPSILON) / (e.sum() + _EPSILON * len(keys))
    return float(np.sum((a - e) * np.log(a / e)))


def drift(aggregate: Mapping[str, Any], role: str,
          reference: Mapping[str, Any] | None) -> dict[str, float] | None:
    """PSI of one model's window against its reference: labels, and the mean over per-label
    score histograms. None when the model has no reference distribution."""
    if not reference:
        return None
    label_psi = psi(aggregate["labels"][role], reference.get("predicted", {}))
    per_label = [psi(_indexed(counts), _indexed(reference["histograms"][label]))
                 for label, counts in aggregate["histograms"][role].items()
                 if label in reference.get("histograms", {})]
    return {"labels": round(label_psi, 6),
            "scores": round(sum(per_label) / len(per_label), 6) if per_label else math.nan}


def _indexed(counts: list[float]) -> dict[str, float]:
    return {str(i): float(c) for i, c in enumerate(counts)}


def eval_folder(references: Mapping[str, Mapping[str, Any]]) -> Folder:
    """The Folder for model-eval windows; `references` maps a model version to its reference."""

    def emit(aggregate: dict[str, Any]) -> dict[str, Any]:
        count = aggregate["count"]
        return {
            "window": aggregate["window"], "task": aggregate["group"], "count": count,
            "models": aggregate["models"],
            "agreement_rate": aggregate["agree"] / count if count else None,
            "label_distribution": {r: {k: v / count for k, v in c.items()}
                                   for r, c in aggregate["labels"].items()} if count else {},
            "psi": {r: drift(aggregate, r, references.get(aggregate["models"].get(r, "")))
                    for r in ROLES},
        }

    return Folder(empty=empty_eval, fold=fold_eval, emit=emit)


def load_references(manifest: Manifest) -> dict[str, dict[str, Any]]:
    """Model version → its reference distribution, for every manifest entry that names one.

    The file (written by the training script from the validation split) holds ``predicted``
    ``counts`` per label and, per label, ``counts`` of its probability in 10 bins; this returns
    ``{"predicted": {label: count}, "histograms": {label: [10 counts]}}``.
    """
    references: dict[str, dict[str, Any]] = {}
    for spec in manifest.models:
        name = spec.extra("reference")
        if not name:
            continue
        path = spec.resolve_path(name)
        try:
            raw = orjson.loads(path.read_bytes())
            references[spec.version] = {
                "predicted": dict(raw["predicted"]["counts"]),
                "histograms": {label: list(info["counts"])
                               for label, info in raw["labels"].items()}}
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise ModelFileError(f"cannot read reference distribution {path}: {exc!r}") from exc
    return references
