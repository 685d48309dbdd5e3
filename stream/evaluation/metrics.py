"""Classification metrics in plain numpy: what `signals eval` reports, tested against scikit-learn.

Conventions (the same as scikit-learn's with ``zero_division=0``):

* Labels are integer indices ``0..K-1``; single-label truth and predictions are int arrays,
  multi-label ones are boolean indicator matrices ``[n, K]``.
* A ratio whose denominator is zero is 0 (a label never predicted has precision 0).
* **micro** averages pool the true/false positives of every label (for single-label data micro-F1
  equals accuracy); **macro** averages are the unweighted mean over the labels that occur in the
  truth (support > 0), so a label that a corpus does not contain neither helps nor hurts.
* A precision-recall curve has one point per distinct score, thresholds descending; an item is
  predicted positive when its score is at or above the threshold.
* Calibration uses equal-width confidence bins ``[i/B, (i+1)/B)`` (the last one includes 1.0).
* Bootstrap intervals are percentile intervals over resampled row indices, from a seeded
  generator, so the same data and seed give the same interval.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class LabelCounts:
    """Per-label true positives, false positives and false negatives."""

    tp: IntArray
    fp: IntArray
    fn: IntArray

    @property
    def support(self) -> IntArray:
        return self.tp + self.fn


def confusion_matrix(truth: IntArray, pred: IntArray, n_labels: int) -> IntArray:
    """Rows are the true label, columns the predicted one."""
    flat = np.asarray(truth, dtype=np.int64) * n_labels + np.asarray(pred, dtype=np.int64)
    cm: IntArray = np.bincount(flat, minlength=n_labels * n_labels).reshape(n_labels, n_labels)
    return cm


def counts_from_confusion(cm: IntArray) -> LabelCounts:
    tp = np.diag(cm).astype(np.int64)
    return LabelCounts(tp=tp, fp=cm.sum(axis=0) - tp, fn=cm.sum(axis=1) - tp)


def counts_from_indicators(truth: BoolArray, pred: BoolArray) -> LabelCounts:
    """Per-label binary counts of a multi-label problem."""
    t, p = np.asarray(truth, dtype=bool), np.asarray(pred, dtype=bool)
    return LabelCounts(tp=(t & p).sum(axis=0).astype(np.int64),
                  fp=(~t & p).sum(axis=0).astype(np.int64),
                  fn=(t & ~p).sum(axis=0).astype(np.int64))


def _ratio(num: npt.ArrayLike, den: npt.ArrayLike) -> FloatArray:
    n, d = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    out: FloatArray = np.divide(n, d, out=np.zeros_like(n), where=d > 0)
    return out


def precision_recall_f1(c: LabelCounts) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Per-label precision, recall and F1 (F1 = 2tp / (2tp + fp + fn))."""
    return (_ratio(c.tp, c.tp + c.fp), _ratio(c.tp, c.tp + c.fn),
            _ratio(2 * c.tp, 2 * c.tp + c.fp + c.fn))


def averages(c: LabelCounts) -> dict[str, float]:
    """Micro averages over every label, macro averages over the labels with support."""
    tp, fp, fn = int(c.tp.sum()), int(c.fp.sum()), int(c.fn.sum())
    precision, recall, f1 = precision_recall_f1(c)
    present = c.support > 0
    def mean(values: FloatArray) -> float:
        return float(values[present].mean()) if present.any() else 0.0
    return {
        "micro_precision": float(_ratio(tp, tp + fp)), "micro_recall": float(_ratio(tp, tp + fn)),
        "micro_f1": float(_ratio(2 * tp, 2 * tp + fp + fn)),
        "macro_precision": mean(precision), "macro_recall": mean(recall), "macro_f1": mean(f1),
    }


def single_label_summary(truth: IntArray, pred: IntArray, n_labels: int) -> dict[str, float]:
    """Accuracy plus the micro and macro averages of one single-label prediction."""
    truth, pred = np.asarray(truth), np.asarray(pred)
    accuracy = float((truth == pred).mean()) if truth.size else 0.0
    return {"accuracy": accuracy,
            **averages(counts_from_confusion(confusion_matrix(truth, pred, n_labels)))}


def multi_label_summary(truth: BoolArray, pred: BoolArray) -> dict[str, float]:
    """Subset accuracy (the whole label set right) plus micro and macro averages."""
    t, p = np.asarray(truth, dtype=bool), np.asarray(pred, dtype=bool)
    accuracy = float((t == p).all(axis=1).mean()) if t.shape[0] else 0.0
    return {"accuracy": accuracy, **averages(counts_from_indicators(t, p))}


@dataclass(frozen=True, slots=True)
class PRCurve:
    """Precision and recall at each distinct score used as threshold (descending)."""

    precision: FloatArray
    recall: FloatArray
    thresholds: FloatArray
    positives: int


def pr_curve(truth: BoolArray, scores: FloatArray) -> PRCurve:
    y = np.asarray(truth, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1] if s.size else np.array([], int)
    tp = np.cumsum(y)[last]
    predicted = last + 1
    positives = int(y.sum())
    return PRCurve(precision=_ratio(tp, predicted), recall=_ratio(tp, positives),
                   thresholds=s[last], positives=positives)


def average_precision(curve: PRCurve) -> float:
    """Sum over the curve of (recall step) x precision, as scikit-learn defines it."""
    if curve.positives == 0:
        return 0.0
    steps = np.diff(np.r_[0.0, curve.recall])
    return float(np.sum(steps * curve.precision))


@dataclass(frozen=True, slots=True)
class OperatingPoint:
    threshold: float
    precision: float
    recall: float


def _point(curve: PRCurve, i: int) -> OperatingPoint:
    return OperatingPoint(float(curve.thresholds[i]), float(curve.precision[i]),
                          float(curve.recall[i]))


def threshold_for_precision(curve: PRCurve, target: float) -> OperatingPoint | None:
    """The point with the highest recall whose precision reaches `target` (None if none does);
    on a tie, the highest threshold."""
    ok = np.flatnonzero(curve.precision >= target)
    if curve.positives == 0 or ok.size == 0:
        return None
    best = ok[np.argmax(curve.recall[ok])]  # argmax takes the first: the highest threshold
    return _point(curve, int(best))


def threshold_for_recall(curve: PRCurve, target: float) -> OperatingPoint | None:
    """The point with the highest precision whose recall reaches `target`; on a tie, the highest
    threshold."""
    ok = np.flatnonzero(curve.recall >= target)
    if curve.positives == 0 or ok.size == 0:
        return None
    best = ok[np.argmax(curve.precision[ok])]
    return _point(curve, int(best))


@dataclass(frozen=True, slots=True)
class ReliabilityBin:
    lower: float
    upper: float
    count: int
    confidence: float  # mean confidence in the bin (0 when empty)
    accuracy: float    # fraction correct in the bin (0 when empty)


def calibration(confidence: FloatArray, correct: BoolArray,
                n_bins: int = 10) -> tuple[float, list[ReliabilityBin]]:
    """Expected calibration error and the reliability bins it is computed from."""
    conf = np.clip(np.asarray(confidence, dtype=np.float64), 0.0, 1.0)
    hit = np.asarray(correct, dtype=np.float64)
    index = np.minimum((conf * n_bins).astype(np.int64), n_bins - 1)
    count = np.bincount(index, minlength=n_bins)
    mean_conf = _ratio(np.bincount(index, weights=conf, minlength=n_bins), count)
    accuracy = _ratio(np.bincount(index, weights=hit, minlength=n_bins), count)
    total = max(int(count.sum()), 1)
    ece = float(np.sum(count / total * np.abs(accuracy - mean_conf)))
    bins = [ReliabilityBin(i / n_bins, (i + 1) / n_bins, int(count[i]), float(mean_conf[i]),
                           float(accuracy[i])) for i in range(n_bins)]
    return ece, bins


Statistic = Callable[[IntArray], Mapping[str, float]]


def bootstrap_ci(statistic: Statistic, n: int, *, rounds: int = 1000, seed: int = 0,
                 level: float = 0.95) -> dict[str, tuple[float, float]]:
    """Percentile intervals of each value `statistic(indices)` returns, over `rounds` resamples
    (with replacement) of ``range(n)``."""
    if n == 0 or rounds <= 0:
        return {}
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {}
    for _ in range(rounds):
        for name, value in statistic(rng.integers(0, n, size=n)).items():
            samples.setdefault(name, []).append(value)
    tail = (1.0 - level) / 2 * 100
    return {name: (float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail)))
            for name, values in samples.items()}


def slice_indices(keys: Sequence[str]) -> dict[str, IntArray]:
    """Row indices per distinct key, keys in sorted order."""
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    return {key: np.asarray(groups[key], dtype=np.int64) for key in sorted(groups)}


LENGTH_BUCKETS = ((0, "0-49"), (50, "50-199"), (200, "200-799"), (800, "800+"))


def length_bucket(chars: int) -> str:
    """The text-length slice of a text of `chars` characters (the models read ~500-700)."""
    name = LENGTH_BUCKETS[0][1]
    for lower, label in LENGTH_BUCKETS:
        if chars >= lower:
            name = label
    return name
