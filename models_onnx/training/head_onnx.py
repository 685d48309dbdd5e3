"""A fitted head as an ONNX graph: dense layers from `embedding` (Gemm, Relu), Concat, then Softmax
or Sigmoid; checked against scikit-learn through the worker's own `OnnxModel`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from sklearn.linear_model import LogisticRegression

from models_onnx.training.common import Array
from models_onnx.training.estimators import DIM, INPUT_SCALE, Estimator
from stream.models.onnx_session import OnnxModel, sha256_of

OPSET = 17
TOLERANCE = 1e-4
# The producer name inside every head file; kept from before the move to models_onnx.training so
# that a retrain still writes byte-identical ONNX files (and manifest sha256s).
PRODUCER = "content-signals/train_heads.py"

Layer = tuple[Array, Array, str | None]  # W [in, out], b [out], activation after


def layers_of(model: Estimator, n_out: int) -> list[Layer]:
    """The estimator as dense layers producing `n_out` logits (a binary estimator's single
    logit z becomes [0, z] when two are wanted: softmax([0, z]) = [1 - sigmoid(z), sigmoid(z)])."""
    if isinstance(model, LogisticRegression):
        weights, biases = [model.coef_.T], [model.intercept_]
        acts: list[str | None] = [None]
    else:
        weights, biases = list(model.coefs_), list(model.intercepts_)
        acts = ["relu"] * (len(weights) - 1) + [None]
    weights[0] = weights[0] * INPUT_SCALE
    width = weights[-1].shape[1]
    if width == 1 and n_out == 2:
        weights[-1] = np.hstack([np.zeros_like(weights[-1]), weights[-1]])
        biases[-1] = np.concatenate([[0.0], biases[-1]])
    elif width != n_out:
        raise ValueError(f"estimator has {width} logits, the head needs {n_out}")
    return [(w.astype(np.float32), b.astype(np.float32), a)
            for w, b, a in zip(weights, biases, acts, strict=True)]


def branch_nodes(index: int, layers: Sequence[Layer]) -> tuple[list[Any], list[Any], str]:
    """Gemm(+Relu) nodes of one branch from `embedding`; its initializers; its output name."""
    nodes, inits = [], []
    current = "embedding"
    for li, (w, b, act) in enumerate(layers):
        prefix = f"branch{index}_layer{li}"
        inits += [numpy_helper.from_array(w, f"{prefix}_W"),
                  numpy_helper.from_array(b, f"{prefix}_b")]
        nodes.append(helper.make_node("Gemm", [current, f"{prefix}_W", f"{prefix}_b"],
                                      [f"{prefix}_out"]))
        current = f"{prefix}_out"
        if act == "relu":
            nodes.append(helper.make_node("Relu", [current], [f"{prefix}_relu"]))
            current = f"{prefix}_relu"
    return nodes, inits, current


def build_graph(branches: Sequence[list[Layer]], final: str, name: str,
                meta: Mapping[str, str]) -> onnx.ModelProto:
    """embedding -> per branch Gemm(+Relu) chain -> Concat -> Softmax | Sigmoid."""
    nodes, inits, logits = [], [], []
    for bi, layers in enumerate(branches):
        branch, weights, out = branch_nodes(bi, layers)
        nodes += branch
        inits += weights
        logits.append(out)
    nodes.append(helper.make_node("Concat", logits, ["logits"], axis=1))
    if final == "softmax":
        nodes.append(helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1))
    else:
        nodes.append(helper.make_node("Sigmoid", ["logits"], ["probabilities"]))
    n_out = sum(layers[-1][0].shape[1] for layers in branches)
    graph = helper.make_graph(
        nodes, name,
        inputs=[helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", DIM])],
        outputs=[helper.make_tensor_value_info("probabilities", TensorProto.FLOAT,
                                               ["batch", n_out])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    model.producer_name = PRODUCER
    helper.set_model_props(model, dict(meta))
    onnx.checker.check_model(model)
    return model


def save_and_verify(model: onnx.ModelProto, path: Path, x_val: Array,
                    expected: Array) -> dict[str, Any]:
    """Write the graph, run it through the runtime wrapper and compare with scikit-learn."""
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    served = onnx_probabilities(path, x_val)
    diff = float(np.abs(served - expected).max())
    check = {"max_abs_diff_vs_sklearn": diff, "tolerance": TOLERANCE, "rows": len(x_val),
             "same_decisions": int((served.argmax(1) == expected.argmax(1)).sum()),
             "passed": diff < TOLERANCE}
    if not check["passed"]:
        raise SystemExit(f"{path.name}: ONNX differs from scikit-learn by {diff:.2e}")
    return check


def onnx_probabilities(path: Path, x: Array) -> Array:
    """The exported head run by stream.models.onnx_session.OnnxModel (the worker's wrapper)."""
    model = OnnxModel(path, sha256_of(path), threads=1)
    model.require(inputs=("embedding",), outputs=("probabilities",))
    probabilities: Array = model.run({"embedding": x.astype(np.float32)})["probabilities"]
    return probabilities
