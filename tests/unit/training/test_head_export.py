"""A tiny head exported by models_onnx.training.head_onnx reproduces scikit-learn's probabilities
through the worker's own OnnxModel (the check every training run makes, on the real heads)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")  # training-only: pip install -e ".[train]"

from models_onnx.training.estimators import DIM, fit, predict
from models_onnx.training.head_onnx import (
    TOLERANCE,
    build_graph,
    layers_of,
    onnx_probabilities,
    save_and_verify,
)


def embeddings(n: int, n_labels: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_labels, n)
    x = rng.normal(size=(n, DIM)) + 0.5 * np.eye(DIM)[y * 7]
    x /= np.linalg.norm(x, axis=1, keepdims=True)  # unit vectors, as the encoder writes
    return x.astype(np.float32), y


@pytest.mark.parametrize(("n_labels", "cfg"), [
    (3, {"kind": "lr", "C": 0.1, "class_weight": None}),
    (2, {"kind": "lr", "C": 1.0, "class_weight": "balanced"}),
    (4, {"kind": "mlp", "hidden": 16, "alpha": 1.0}),
])
def test_softmax_head_matches_sklearn(tmp_path: Path, n_labels: int,
                                      cfg: dict[str, object]) -> None:
    x, y = embeddings(240, n_labels)
    model = fit(cfg, x[:200], y[:200])
    expected = predict(model, x[200:], n_labels)
    graph = build_graph([layers_of(model, n_labels)], "softmax", "tiny-v1",
                        {"labels": "[]", "task": "tiny"})
    check = save_and_verify(graph, tmp_path / "tiny-v1.onnx", x[200:], expected)
    assert check["passed"] and check["max_abs_diff_vs_sklearn"] < TOLERANCE
    assert check["same_decisions"] == 40


def test_stacked_sigmoid_head_matches_each_binary_model(tmp_path: Path) -> None:
    models, x = [], embeddings(300, 2)[0]
    for seed in (1, 2):
        _, y = embeddings(300, 2, seed)
        models.append(fit({"kind": "lr", "C": 0.3, "class_weight": None}, x, y))
    graph = build_graph([layers_of(m, 1) for m in models], "sigmoid", "stack-v1", {})
    path = tmp_path / "stack-v1.onnx"
    expected = np.column_stack([predict(m, x, 2)[:, 1] for m in models])
    save_and_verify(graph, path, x, expected)
    assert np.abs(onnx_probabilities(path, x) - expected).max() < TOLERANCE


def test_a_graph_that_disagrees_stops_the_run(tmp_path: Path) -> None:
    x, y = embeddings(100, 2)
    model = fit({"kind": "lr", "C": 0.1, "class_weight": None}, x, y)
    graph = build_graph([layers_of(model, 2)], "softmax", "bad-v1", {})
    with pytest.raises(SystemExit, match="differs from scikit-learn"):
        save_and_verify(graph, tmp_path / "bad-v1.onnx", x, predict(model, x, 2)[:, ::-1])
