"""The model families a head may be (logistic regression, a one-hidden-layer MLP), fitted on
scaled embeddings, cross-validated on the folds of `splits`, and the selection metrics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from sklearn.neural_network import MLPClassifier

from models_onnx.training.common import Array
from models_onnx.training.pools import Pool
from models_onnx.training.splits import N_FOLDS
from stream.evaluation.metrics import confusion_matrix, counts_from_confusion, precision_recall_f1

SEED = 0
DIM = 384
INPUT_SCALE = float(np.sqrt(DIM))  # unit-norm embeddings -> ~unit-variance features

Config = dict[str, Any]
Estimator = Any  # LogisticRegression | MLPClassifier (scikit-learn has no type hints)


def config_name(cfg: Config) -> str:
    """A short stable name for a model configuration."""
    if cfg["kind"] == "lr":
        return f"lr(C={cfg['C']},class_weight={cfg['class_weight']})"
    return f"mlp(hidden={cfg['hidden']},alpha={cfg['alpha']})"


def lr_config(c: float, class_weight: str | None = None) -> Config:
    return {"kind": "lr", "C": round(c, 6), "class_weight": class_weight}


def make_estimator(cfg: Config) -> Estimator:
    """A fresh, seeded scikit-learn estimator for `cfg`."""
    if cfg["kind"] == "lr":
        return LogisticRegression(C=cfg["C"], class_weight=cfg["class_weight"], max_iter=2000,
                                  random_state=SEED)
    return MLPClassifier(hidden_layer_sizes=(cfg["hidden"],), alpha=cfg["alpha"],
                         early_stopping=True, validation_fraction=0.1, n_iter_no_change=10,
                         max_iter=300, random_state=SEED)


def fit(cfg: Config, x: Array, y: Array) -> Estimator:
    """Fit on scaled embeddings (the scale is folded into the first layer at export)."""
    return make_estimator(cfg).fit(x.astype(np.float64) * INPUT_SCALE, y)


def predict(model: Estimator, x: Array, n_labels: int) -> Array:
    """predict_proba with one column per label index (absent classes get 0)."""
    proba = model.predict_proba(x.astype(np.float64) * INPUT_SCALE)
    out = np.zeros((len(x), n_labels))
    out[:, model.classes_] = proba
    return out


def cross_val(pool: Pool, cfg: Config) -> Array:
    """Out-of-fold probabilities for the scored training rows (NaN elsewhere)."""
    oof = np.full((len(pool.y), len(pool.labels)), np.nan)
    train = ~pool.is_val
    for f in range(N_FOLDS):
        fit_rows = train & (pool.fold != f)
        test_rows = train & pool.target & (pool.fold == f)
        model = fit(cfg, pool.x[fit_rows], pool.y[fit_rows])
        oof[test_rows] = predict(model, pool.x[test_rows], len(pool.labels))
    return oof


def per_label(y: Array, pred: Array, n_labels: int) -> tuple[Array, Array, Array]:
    """Per-label precision, recall and F1 of single-label predictions (the runtime's metrics)."""
    return precision_recall_f1(counts_from_confusion(confusion_matrix(y, pred, n_labels)))


def macro_f1(y: Array, p: Array, w: Array) -> float:
    """Mean F1 over every label of the head (a label without support counts as 0)."""
    return float(per_label(y, p.argmax(1), p.shape[1])[2].mean())


def macro_recall(y: Array, p: Array, w: Array) -> float:
    return float(per_label(y, p.argmax(1), p.shape[1])[1].mean())


def accuracy(y: Array, p: Array, w: Array) -> float:
    return float((p.argmax(1) == y).mean())


def average_precision(y: Array, p: Array, w: Array) -> float:
    """AP of the positive (last) label, every source weighted equally (row weights `w`: the
    runtime's unweighted `average_precision` does not apply)."""
    return float(average_precision_score(y == p.shape[1] - 1, p[:, -1], sample_weight=w))


SCORERS: dict[str, Callable[[Array, Array, Array], float]] = {
    "macro_f1": macro_f1, "macro_recall": macro_recall, "accuracy": accuracy,
    "average_precision": average_precision,
}


def dev_score(pool: Pool, oof: Array, metric: str) -> float:
    """The selection metric on the out-of-fold predictions."""
    rows = ~pool.is_val & pool.target
    return SCORERS[metric](pool.y[rows], oof[rows], pool.weights()[rows])
