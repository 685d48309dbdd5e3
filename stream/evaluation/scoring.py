"""Collected predictions → the evaluation result: a plain JSON-ready dict, one entry per task.

Single-label tasks (language, topic, sentiment, spam, emotion) are scored on the signal's
``label``; the labels shown are those that occur in the truth or the predictions, in the model's
order. Multi-label tasks (safety) are scored per label as binary problems on ``flagged``, and
accuracy is the fraction of records whose whole flagged set is right. Precision-recall curves read
the signal's per-label ``scores``; a model that reports only its top label and score (the language
model) gets curves from that score alone (``"score_source": "top1"``: a record counts as positive
for a label only when that label is its top one, so recall stops at the top-1 recall).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from stream.evaluation import metrics as m
from stream.evaluation.offline import Evaluation, TaskPredictions

SCHEMA = "content-signals.eval/1"
MAX_CURVE_POINTS = 200
CI_METRICS = ("accuracy", "macro_f1", "micro_f1")
DIGITS = 6
NOT_SET = "(not set)"  # the slice value of a record that lacks the key (e.g. no "edge")


@dataclass(frozen=True, slots=True)
class ScoreOptions:
    bootstrap: int = 1000
    seed: int = 0
    bins: int = 10
    target_precision: float | None = None
    target_recall: float | None = None


@dataclass(frozen=True, slots=True)
class Arrays:
    """One task's predictions as arrays over `labels`: truth and prediction indicators, scores."""

    labels: tuple[str, ...]
    truth: m.BoolArray    # [n, K]
    pred: m.BoolArray     # [n, K]
    scores: m.FloatArray  # [n, K]
    confidence: m.FloatArray  # [n] the signal's own score
    score_source: str


def build_result(ev: Evaluation, options: ScoreOptions,
                 settings: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "data": {"path": str(ev.path), "sha256": ev.sha256, "records": ev.records,
                 "rejected": len(ev.rejected), "rejections": ev.rejected[:50]},
        "models": ev.versions,
        "options": {**settings, **asdict(options)},
        "notes": ev.notes,
        "tasks": {name: score_task(p, options) for name, p in ev.tasks.items()},
    }


def to_arrays(p: TaskPredictions) -> Arrays:
    if p.model.multi_label:
        labels = p.model.labels
    else:
        seen = {t[0] for t in p.truth} | {s.label for s in p.signals}
        labels = tuple(label for label in p.model.labels if label in seen)
    has_scores = all(s.scores is not None for s in p.signals)
    index = {label: i for i, label in enumerate(labels)}
    n, k = len(p.truth), len(labels)
    truth, pred = np.zeros((n, k), bool), np.zeros((n, k), bool)
    scores = np.zeros((n, k))
    for i, (t, s) in enumerate(zip(p.truth, p.signals, strict=True)):
        truth[i, [index[x] for x in t]] = True
        chosen = list(s.flagged or ()) if p.model.multi_label else [s.label]
        pred[i, [index[x] for x in chosen]] = True
        if s.scores is not None:
            scores[i] = [float(s.scores.get(label, 0.0)) for label in labels]
        else:
            scores[i, index[s.label]] = float(s.score)
    confidence = np.array([float(s.score) for s in p.signals])
    return Arrays(labels, truth, pred, scores, confidence, "scores" if has_scores else "top1")


def summary_of(a: Arrays, multi_label: bool) -> Callable[[m.IntArray], dict[str, float]]:
    """Accuracy, micro and macro averages of the rows `idx` (used whole, per slice, bootstrap)."""
    truth_idx, pred_idx = a.truth.argmax(axis=1), a.pred.argmax(axis=1)

    def summary(idx: m.IntArray) -> dict[str, float]:
        if multi_label:
            return m.multi_label_summary(a.truth[idx], a.pred[idx])
        return m.single_label_summary(truth_idx[idx], pred_idx[idx], len(a.labels))
    return summary


def score_task(p: TaskPredictions, options: ScoreOptions) -> dict[str, Any]:
    a = to_arrays(p)
    multi = p.model.multi_label
    summary = summary_of(a, multi)
    everything = np.arange(len(p.truth), dtype=np.int64)
    ci = m.bootstrap_ci(lambda idx: {k: v for k, v in summary(idx).items() if k in CI_METRICS},
                        len(everything), rounds=options.bootstrap, seed=options.seed)
    counts = m.counts_from_indicators(a.truth, a.pred)
    curves = {label: m.pr_curve(a.truth[:, k], a.scores[:, k])
              for k, label in enumerate(a.labels) if a.truth[:, k].any()}
    micro = m.pr_curve(a.truth.ravel(), a.scores.ravel())
    if multi:  # calibration of every per-label probability against its binary truth
        ece, bins = m.calibration(a.scores.ravel(), a.truth.ravel(), options.bins)
    else:  # calibration of the top label's score against being right
        correct = np.asarray((a.truth & a.pred).any(axis=1))
        ece, bins = m.calibration(a.confidence, correct, options.bins)
    return {
        "model": p.model.version, "multi_label": multi, "n": len(p.truth),
        "labels": list(a.labels),
        "metrics": _rounded(summary(everything)),
        "ci95": {k: [round(lo, DIGITS), round(hi, DIGITS)] for k, (lo, hi) in ci.items()},
        "per_label": _per_label(a, counts, curves, p.model.thresholds),
        "confusion": _confusion(a, multi),
        "pr": {"score_source": a.score_source, "micro": _curve_json(micro),
               "curves": {label: _curve_json(c) for label, c in curves.items()}},
        "operating_points": _operating_points(curves, micro, options),
        "calibration": {"ece": round(ece, DIGITS), "bins": [_rounded(asdict(b)) for b in bins]},
        "slices": _slices(p, summary),
    }


def _rounded(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: round(v, DIGITS) if isinstance(v, float) else v for k, v in values.items()}


def _per_label(a: Arrays, counts: m.LabelCounts, curves: Mapping[str, m.PRCurve],
               thresholds: Mapping[str, float]) -> dict[str, dict[str, Any]]:
    precision, recall, f1 = m.precision_recall_f1(counts)
    rows = {}
    for k, label in enumerate(a.labels):
        row: dict[str, Any] = {"precision": precision[k], "recall": recall[k], "f1": f1[k],
                               "support": int(counts.support[k]),
                               "predicted": int(counts.tp[k] + counts.fp[k])}
        if label in curves:
            row["average_precision"] = m.average_precision(curves[label])
        if label in thresholds:
            row["threshold"] = thresholds[label]
        rows[label] = _rounded({k: float(v) if isinstance(v, np.floating) else v
                                for k, v in row.items()})
    return rows


def _confusion(a: Arrays, multi: bool) -> dict[str, Any]:
    """Single-label: rows = truth, columns = prediction. Multi-label: a 2x2 table per label."""
    if not multi:
        cm = m.confusion_matrix(a.truth.argmax(axis=1), a.pred.argmax(axis=1), len(a.labels))
        return {"labels": list(a.labels), "matrix": cm.tolist()}
    t, p = a.truth, a.pred
    return {"labels": list(a.labels), "per_label": {
        label: {"tp": int((t[:, k] & p[:, k]).sum()), "fp": int((~t[:, k] & p[:, k]).sum()),
                "fn": int((t[:, k] & ~p[:, k]).sum()), "tn": int((~t[:, k] & ~p[:, k]).sum())}
        for k, label in enumerate(a.labels)}}


def _curve_json(curve: m.PRCurve) -> dict[str, Any]:
    """The curve, thinned to at most MAX_CURVE_POINTS points (first and last kept)."""
    size = curve.thresholds.size
    keep = (np.unique(np.linspace(0, size - 1, MAX_CURVE_POINTS).round().astype(int))
            if size > MAX_CURVE_POINTS else np.arange(size))
    return {"positives": curve.positives, "average_precision": round(m.average_precision(curve),
                                                                       DIGITS),
            **{name: np.round(getattr(curve, name)[keep], DIGITS).tolist()
               for name in ("precision", "recall", "thresholds")}}


def _operating_points(curves: Mapping[str, m.PRCurve], micro: m.PRCurve,
                      options: ScoreOptions) -> list[dict[str, Any]]:
    """For each target given: the threshold per label (and pooled) that meets it, or None."""
    targets = [("precision", options.target_precision, m.threshold_for_precision),
               ("recall", options.target_recall, m.threshold_for_recall)]
    points = []
    for name, value, find in targets:
        if value is None:
            continue
        def point(curve: m.PRCurve, find: Any = find, value: float = value) -> Any:
            found = find(curve, value)
            return _rounded(asdict(found)) if found is not None else None
        points.append({"target": name, "value": value, "micro": point(micro),
                       "labels": {label: point(c) for label, c in curves.items()}})
    return points


def _slices(p: TaskPredictions,
            summary: Callable[[m.IntArray], dict[str, float]]) -> dict[str, dict[str, Any]]:
    """Per slice (content type, language, market, length, edge ...) and value: n and metrics."""
    names = sorted({name for keys in p.slices for name in keys})
    result: dict[str, dict[str, Any]] = {}
    for name in names:
        groups = m.slice_indices([keys.get(name, NOT_SET) for keys in p.slices])
        result[name] = {key: {"n": int(groups[key].size),
                              **_rounded({k: v for k, v in summary(groups[key]).items()
                                          if k in CI_METRICS})}
                        for key in sorted(groups, key=_slice_order)}
    return result


def _slice_order(key: str) -> tuple[int, str]:
    """Length buckets shortest first, missing values last, the rest alphabetical."""
    buckets = [label for _, label in m.LENGTH_BUCKETS]
    if key in buckets:
        return buckets.index(key), ""
    return (len(buckets) + 1 if key in (NOT_SET, "unknown") else len(buckets)), key
