"""The validation reports of a head, computed with the runtime's metrics
(`stream.evaluation.metrics`, what `signals eval` reports), and the published TweetEval numbers
they are set beside. Macro averages here are over every label of the head (a label without
support counts as 0), as the committed metrics.json files were computed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from models_onnx.training.common import Array, r4
from models_onnx.training.estimators import SEED, per_label
from stream.evaluation import metrics as m

REFERENCES: dict[str, dict[str, Any]] = {
    "sentiment": {"metric": "macro_recall", "RoBERTa-base": 71.3, "FastText": 62.9,
                  "SVM": 62.9, "LSTM": 58.3},
    "offensive": {"metric": "macro_f1", "RoBERTa-base": 79.5, "FastText": 73.4, "SVM": 52.3,
                  "LSTM": 71.7},
    "hate": {"metric": "macro_f1", "RoBERTa-base": 46.6, "FastText": 50.6, "SVM": 36.7,
             "LSTM": 52.6},
    "emotion": {"metric": "macro_f1", "RoBERTa-base": 76.1, "FastText": 65.2, "SVM": 64.7,
                "LSTM": 66.0},
}
REFERENCE_NOTE = (
    "Published numbers: Barbieri et al., TweetEval (Findings of EMNLP 2020), on the official "
    "TweetEval test sets, models trained on the full official training sets. Ours: a head on "
    "frozen sentence embeddings (the encoder is named in provenance), trained on the training "
    "part of this project's copy "
    "(about 60 % of TweetEval's validation + test sets), scored on our own held-back 20 % of it; "
    "not the same test set, and far less training data.")
COLUMN = {"macro_f1": 2, "macro_recall": 1}  # in per_label's (precision, recall, f1)


def label_report(y: Array, pred: Array, labels: Sequence[str]) -> dict[str, Any]:
    """Per-label precision/recall/F1/support, micro and macro averages, confusion matrix."""
    cm = m.confusion_matrix(y, pred, len(labels))
    counts = m.counts_from_confusion(cm)
    prec, rec, f1 = m.precision_recall_f1(counts)
    micro = m.averages(counts)
    return {
        "n": len(y),
        "accuracy": r4((y == pred).mean()),
        "per_label": {lab: {"precision": r4(prec[j]), "recall": r4(rec[j]), "f1": r4(f1[j]),
                            "support": int(counts.support[j])} for j, lab in enumerate(labels)},
        "micro": {k: r4(micro[f"micro_{k}"]) for k in ("precision", "recall", "f1")},
        "macro": {"precision": r4(prec.mean()), "recall": r4(rec.mean()), "f1": r4(f1.mean())},
        "confusion_matrix": {"rows": "true label", "columns": "predicted label",
                             "labels": list(labels), "matrix": cm.tolist()},
    }


def binary_report(y: Array, p: Array, threshold: float) -> dict[str, Any]:
    """One sigmoid label at its threshold: P/R/F1 of the positive class, AP, confusion."""
    cm = m.confusion_matrix(y.astype(np.int64), (p >= threshold).astype(np.int64), 2)
    (tn, fp), (fn, tp) = cm.tolist()
    prec, rec, f1 = m.precision_recall_f1(m.counts_from_confusion(cm))
    ap = r4(m.average_precision(m.pr_curve(y, p))) if y.any() else None
    return {"n": len(y), "support": int(y.sum()), "precision": r4(prec[1]), "recall": r4(rec[1]),
            "f1": r4(f1[1]), "macro_f1_two_class": r4((f1[1] + f1[0]) / 2),
            "average_precision": ap, "confusion": {"tn": tn, "fp": fp, "fn": fn, "tp": tp}}


def top_k_accuracy(y: Array, p: Array, k: int) -> float:
    return r4((np.argsort(-p, axis=1)[:, :k] == y[:, None]).any(axis=1).mean())


def macro_over(y: Array, pred: Array, labels: Sequence[int], metric: str) -> float:
    """Mean macro-F1 or macro-recall over `labels` (each scored even where it is absent)."""
    n = int(max(y.max(initial=0), pred.max(initial=0), *labels)) + 1
    return float(per_label(y, pred, n)[COLUMN[metric]][list(labels)].mean())


def bootstrap_ci(y: Array, pred: Array, metric: str, rounds: int = 1000) -> list[float]:
    """95 % percentile bootstrap interval (percent) of macro-F1 / macro-recall over the rows,
    over the labels of truth and prediction."""
    labels = sorted(set(y.tolist()) | set(pred.tolist()))
    interval = m.bootstrap_ci(
        lambda idx: {metric: macro_over(y[idx], pred[idx], labels, metric)}, len(y),
        rounds=rounds, seed=SEED)[metric]
    return [round(100 * q, 1) for q in interval]


def reference_block(name: str, y: Array, pred: Array) -> dict[str, Any]:
    """Our number (with a bootstrap interval) next to the published ones (percent)."""
    ref = REFERENCES[name]
    ours = macro_over(y, pred, sorted(set(y.tolist())), ref["metric"])
    return {"metric": ref["metric"], "ours": round(100 * ours, 1), "ours_rows": len(y),
            "ours_95ci_bootstrap": bootstrap_ci(y, pred, ref["metric"]),
            "published": {k: v for k, v in ref.items() if k != "metric"},
            "note": REFERENCE_NOTE}
