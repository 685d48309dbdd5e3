"""The training reports now use the runtime's metrics (stream.evaluation.metrics) and drift
reference (stream.models.shadow). Each is checked here against the scikit-learn / numpy code it
replaced (models_onnx/scripts/ before the move, condensed) on the same arrays: same numbers."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("onnx")  # the report modules sit beside the ONNX export
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from models_onnx.training import estimators, language, reports
from models_onnx.training.safety import safety_summary
from stream.models import shadow

r4 = reports.r4
SEEDS = range(12)


def sample(seed: int, n_labels: int, n: int = 300) -> tuple[Any, Any, Any]:
    """Labels, predictions (sometimes missing a label) and probabilities."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_labels, n)
    p = rng.dirichlet(np.ones(n_labels), n)
    p[: n // 3, :] = p[: n // 3, :] ** 3  # sharper rows, other argmaxes
    p /= p.sum(axis=1, keepdims=True)
    if seed % 3 == 0:
        y[y == n_labels - 1] = 0  # a label without support
    return y, p.argmax(1), p


# ----------------------------------------------------------------------- the old code


def old_label_report(y: Any, pred: Any, labels: list[str]) -> dict[str, Any]:
    idx = list(range(len(labels)))
    prec, rec, f1, sup = precision_recall_fscore_support(y, pred, labels=idx, zero_division=0)
    micro = precision_recall_fscore_support(y, pred, labels=idx, average="micro",
                                            zero_division=0)
    return {"n": len(y), "accuracy": r4((y == pred).mean()),
            "per_label": {lab: {"precision": r4(prec[j]), "recall": r4(rec[j]), "f1": r4(f1[j]),
                                "support": int(sup[j])} for j, lab in enumerate(labels)},
            "micro": {"precision": r4(micro[0]), "recall": r4(micro[1]), "f1": r4(micro[2])},
            "macro": {"precision": r4(prec.mean()), "recall": r4(rec.mean()),
                      "f1": r4(f1.mean())},
            "confusion_matrix": {"rows": "true label", "columns": "predicted label",
                                 "labels": list(labels),
                                 "matrix": confusion_matrix(y, pred, labels=idx).tolist()}}


def old_binary_report(y: Any, p: Any, threshold: float) -> dict[str, Any]:
    pred = p >= threshold
    tp, fp = int((pred & y).sum()), int((pred & ~y).sum())
    fn, tn = int((~pred & y).sum()), int((~pred & ~y).sum())
    prec, rec = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
    neg_prec, neg_rec = tn / max(tn + fn, 1), tn / max(tn + fp, 1)
    f1 = 2 * prec * rec / max(prec + rec, 1e-12)
    neg_f1 = 2 * neg_prec * neg_rec / max(neg_prec + neg_rec, 1e-12)
    return {"n": len(y), "support": int(y.sum()), "precision": r4(prec), "recall": r4(rec),
            "f1": r4(f1), "macro_f1_two_class": r4((f1 + neg_f1) / 2),
            "average_precision": r4(average_precision_score(y, p)) if y.any() else None,
            "confusion": {"tn": tn, "fp": fp, "fn": fn, "tp": tp}}


def old_bootstrap_ci(y: Any, pred: Any, metric: str, rounds: int = 1000) -> list[float]:
    rng = np.random.default_rng(0)
    labels = sorted(set(y.tolist()) | set(pred.tolist()))
    column = {"macro_f1": 2, "macro_recall": 1}[metric]
    scores = []
    for _ in range(rounds):
        idx = rng.integers(0, len(y), len(y))
        stats = precision_recall_fscore_support(y[idx], pred[idx], labels=labels,
                                                zero_division=0)
        scores.append(stats[column].mean())
    return [round(100 * float(q), 1) for q in np.percentile(scores, [2.5, 97.5])]


def old_ours(y: Any, pred: Any, metric: str) -> float:
    stats = precision_recall_fscore_support(y, pred, labels=sorted(set(y.tolist())),
                                            zero_division=0)
    return round(100 * float(stats[{"macro_f1": 2, "macro_recall": 1}[metric]].mean()), 1)


def old_macro(y: Any, p: Any, column: int) -> float:
    stats = precision_recall_fscore_support(y, p.argmax(1), labels=list(range(p.shape[1])),
                                            zero_division=0)
    return float(stats[column].mean())


def old_histogram(p: Any) -> list[int]:
    counts, _ = np.histogram(p, bins=[round(0.1 * i, 1) for i in range(11)])
    return [int(c) for c in counts]


# ----------------------------------------------------------------------- the checks


@pytest.mark.parametrize("seed", SEEDS)
def test_label_report_and_selection_scores_are_unchanged(seed: int) -> None:
    n_labels = 2 + seed % 4
    y, pred, p = sample(seed, n_labels)
    labels = [f"l{j}" for j in range(n_labels)]
    assert reports.label_report(y, pred, labels) == old_label_report(y, pred, labels)
    w = np.ones(len(y))
    assert estimators.macro_f1(y, p, w) == old_macro(y, p, 2)  # exact: ties decide selection
    assert estimators.macro_recall(y, p, w) == old_macro(y, p, 1)


@pytest.mark.parametrize("seed", SEEDS)
def test_binary_report_is_unchanged(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.random(200) < 0.3 if seed else np.zeros(200, dtype=bool)
    p = np.clip(y * 0.3 + rng.random(200) * 0.7, 0, 1)
    for threshold in (0.2, 0.5, 0.77, 1.1):
        assert reports.binary_report(y, p, threshold) == old_binary_report(y, p, threshold)


@pytest.mark.parametrize("seed", range(4))
def test_reference_comparison_and_bootstrap_are_unchanged(seed: int) -> None:
    y, pred, _ = sample(seed, 3, n=120)
    for metric in ("macro_f1", "macro_recall"):
        assert reports.bootstrap_ci(y, pred, metric, rounds=300) == \
            old_bootstrap_ci(y, pred, metric, rounds=300)
        assert round(100 * reports.macro_over(y, pred, sorted(set(y.tolist())), metric), 1) \
            == old_ours(y, pred, metric)


def test_safety_micro_summary_is_unchanged() -> None:
    per_label = {"a": {"confusion": {"tp": 30, "fp": 7, "fn": 11}, "precision": 0.8,
                       "recall": 0.7, "f1": 0.75},
                 "b": {"confusion": {"tp": 3, "fp": 0, "fn": 19}, "precision": 1.0,
                       "recall": 0.1, "f1": 0.2}}
    tp, fp, fn = 33, 7, 30
    p, r = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
    old = {"precision": r4(p), "recall": r4(r), "f1": r4(2 * p * r / max(p + r, 1e-12))}
    assert safety_summary(per_label)["micro"] == old


@pytest.mark.parametrize("seed", SEEDS)
def test_language_label_metrics_are_unchanged(seed: int) -> None:
    y, pred, _ = sample(seed, 6)
    labels = [f"l{j}" for j in range(6)]
    report = language.label_metrics(y, pred, labels)
    prec, rec, f1, sup = precision_recall_fscore_support(y, pred, labels=list(range(6)),
                                                         zero_division=0)
    assert report["accuracy"] == round(float(accuracy_score(y, pred)), 5)
    assert report["macro_f1"] == round(float(f1_score(y, pred, labels=list(range(6)),
                                                      average="macro", zero_division=0)), 5)
    assert report["per_label"]["l1"] == {"precision": round(float(prec[1]), 4),
                                         "recall": round(float(rec[1]), 4),
                                         "f1": round(float(f1[1]), 4), "support": int(sup[1])}


def test_compare_language_scores_are_unchanged() -> None:
    pytest.importorskip("py3langid")
    pytest.importorskip("pycld2")
    from models_onnx.training.compare_language import scores

    rng = np.random.default_rng(1)
    codes = ["en", "de", "fr", "nl", "xx", "un"]
    gold = [str(c) for c in rng.choice(codes[:4], 400)]
    pred = [g if rng.random() < 0.7 else str(rng.choice(codes)) for g in gold]
    for labels in (codes[:4], codes[:3]):
        assert scores(gold, pred, labels) == {
            "n": 400, "accuracy": round(float(accuracy_score(gold, pred)), 5),
            "macro_f1": round(float(f1_score(gold, pred, labels=labels, average="macro",
                                             zero_division=0)), 5)}


def test_reference_histogram_is_the_runtime_binning_and_matches_the_old_one() -> None:
    """The old np.histogram over edges 0.0, 0.1 ... 1.0 and the runtime's int(score * 10) agree on
    every score but those within one ulp below an edge (0.8999999999999999: the runtime says bin
    9, np.histogram 8); the reference now uses the runtime's rule, so both sides of the PSI bin
    alike."""
    rng = np.random.default_rng(0)
    edges = np.array([i / 10 for i in range(11)])
    p = np.concatenate([rng.random(20000), rng.random(2000) ** 8, edges])
    for scores in (p, p.astype(np.float32).astype(np.float64)):
        assert shadow.score_histogram(scores) == old_histogram(scores)
    near = np.clip(np.concatenate([edges, np.nextafter(edges, -1), np.nextafter(edges, 2)]), 0, 1)
    for scores in (p, near):
        runtime = [0] * shadow.BINS
        for score in scores:  # what the model_eval windows count
            runtime[shadow.score_bin(float(score))] += 1
        assert shadow.score_histogram(scores) == runtime


def test_reference_distribution_is_unchanged() -> None:
    rng = np.random.default_rng(3)
    probs = {"a": rng.random(77), "b": rng.random(77)}
    ref = shadow.reference_distribution(probs, {"a": 50, "b": 27}, "val rows")
    assert ref["bin_edges"] == [round(0.1 * i, 1) for i in range(11)]
    assert ref["labels"]["a"] == {"n": 77, "counts": old_histogram(probs["a"]), "fractions": [
        r4(c / 77) for c in old_histogram(probs["a"])]}
    assert ref["predicted"] == {"counts": {"a": 50, "b": 27},
                                "fractions": {"a": r4(50 / 77), "b": r4(27 / 77)}}
    multi = shadow.reference_distribution(probs, {"a": 5, "b": 9}, "x", totals={"a": 77, "b": 70})
    assert multi["predicted"]["fractions"] == {"a": r4(5 / 77), "b": r4(9 / 70)}
