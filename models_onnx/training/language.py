"""Train and export the character n-gram language identifier (langid-charngram-v1).

Model: multinomial naive Bayes over hashed character n-grams (``stream.models.langid_features``),
fitted on length-normalised n-gram counts (each sentence contributes total mass 1), with a
softmax temperature fitted on an inner development split. At inference it is linear:

    probabilities = softmax(mean_{n-grams} W[id] + b),   W = tau * centred log P(n-gram | lang)

which the ONNX graph computes as Gather -> ReduceSum -> Mul(row_scale) -> Add(b) -> Softmax.

Protocol (all splits by a hash of the row id, stratified per label, fixed before tuning; the
hash order of `models_onnx.training.splits.hash_order` with this model's own salt):
  * held-back validation: per label, the rows with the smallest sha256(f"{salt}:val:{id}")
    (20 %); reported in metrics.json, never used for choices;
  * the remaining training portion is split the same way (salt ":dev:") into fit / dev;
    hyper-parameters (n_buckets, ngram_max, alpha) and tau are chosen on dev;
  * the final model is refitted on the whole training portion with those choices.

Usage (from the repository root):
    .venv/bin/python -m models_onnx.training.language [--data PATH] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import scipy.sparse as sp
from onnx import TensorProto, helper, numpy_helper
from sklearn.naive_bayes import MultinomialNB

from models_onnx.training.common import DATA_DIR, LANGID_DIR, Array
from models_onnx.training.embed import load_rows
from models_onnx.training.splits import hash_order
from stream.evaluation import metrics as m
from stream.models.langid_features import char_ngram_ids
from stream.models.onnx_session import sha256_of as sha256_file

VERSION = "langid-charngram-v1"
SEED = 0
SPLIT_SALT = f"{VERSION}-split-{SEED}"
VAL_FRACTION = 0.2
NGRAM_MIN = 1
MAX_CHARS = 256
GRID_BUCKETS = (1 << 16, 1 << 17)
GRID_NGRAM_MAX = (4, 5)
GRID_ALPHA = (3e-5, 1e-4, 3e-4, 1e-3)
MIN_GAIN = 0.001  # a larger configuration must beat a smaller one by this dev accuracy
BATCH = 2048
OPSET = 17
# The producer name inside the ONNX file, kept from before the move to models_onnx.training so
# that a retrain still writes a byte-identical file.
PRODUCER = "content-signals/train_language.py"


def stratified_split(
    rows: Sequence[dict[str, Any]], idx: Sequence[int], tag: str, fraction: float
) -> tuple[list[int], list[int]]:
    """Split row indices into (rest, held) per label by sha256 of salt, tag and id."""
    order = hash_order(((i, rows[i]["label"], f"{tag}:{rows[i]['id']}") for i in idx), SPLIT_SALT)
    held: set[int] = set()
    for members in order.values():
        held.update(members[: round(fraction * len(members))])
    return [i for i in idx if i not in held], sorted(held)


def split_rows(rows: Sequence[dict[str, Any]]) -> dict[str, list[int]]:
    """The fixed train/val split and the inner fit/dev split of train."""
    train, val = stratified_split(rows, range(len(rows)), "val", VAL_FRACTION)
    fit, dev = stratified_split(rows, train, "dev", VAL_FRACTION)
    return {"train": train, "val": val, "fit": fit, "dev": dev}


def featurise(texts: Sequence[str], n_buckets: int, ngram_max: int) -> sp.csr_matrix:
    """Length-normalised n-gram count matrix [rows, n_buckets + 1] (column 0 empty)."""
    blocks = []
    for start in range(0, len(texts), BATCH):
        ids, scale = char_ngram_ids(
            texts[start : start + BATCH], n_buckets=n_buckets, ngram_min=NGRAM_MIN,
            ngram_max=ngram_max, max_chars=MAX_CHARS,
        )
        rows = np.repeat(np.arange(ids.shape[0]), ids.shape[1])
        vals = np.repeat(scale[:, 0].astype(np.float64), ids.shape[1]) * (ids.ravel() > 0)
        block = sp.csr_matrix((vals, (rows, ids.ravel())), shape=(ids.shape[0], n_buckets + 1))
        block.sum_duplicates()
        block.eliminate_zeros()
        blocks.append(block)
    return sp.vstack(blocks, format="csr")


def fit_temperature(model: MultinomialNB, x_dev: sp.csr_matrix, y_dev: Array) -> float:
    """Softmax temperature tau minimising dev log-loss (log-grid, then refined)."""
    scores = np.asarray(x_dev @ model.feature_log_prob_.T)
    scores -= scores.mean(axis=1, keepdims=True)

    def nll(tau: float) -> float:
        z = tau * scores + model.class_log_prior_
        z -= z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return float(-logp[np.arange(len(y_dev)), y_dev].mean())

    grid = np.exp(np.linspace(np.log(1.0), np.log(1000.0), 61))
    best = float(grid[int(np.argmin([nll(t) for t in grid]))])
    fine = best * np.exp(np.linspace(-0.06, 0.06, 25))
    return float(fine[int(np.argmin([nll(t) for t in fine]))])


def tune(texts: list[str], y: Array, split: dict[str, list[int]]) -> dict[str, Any]:
    """Grid search on fit/dev; returns the chosen hyper-parameters and the grid.

    Each (n_buckets, ngram_max) gets its best alpha; the cheapest configuration (grid
    order) within MIN_GAIN dev accuracy of the best one is chosen.
    """
    grid: list[dict[str, Any]] = []
    per_config: list[tuple[float, dict[str, Any], MultinomialNB, sp.csr_matrix]] = []
    for n_buckets in GRID_BUCKETS:
        for ngram_max in GRID_NGRAM_MAX:
            x_fit = featurise([texts[i] for i in split["fit"]], n_buckets, ngram_max)
            x_dev = featurise([texts[i] for i in split["dev"]], n_buckets, ngram_max)
            best: tuple[float, dict[str, Any], MultinomialNB, sp.csr_matrix] | None = None
            for alpha in GRID_ALPHA:
                model = MultinomialNB(alpha=alpha).fit(x_fit, y[split["fit"]])
                acc = float((model.predict(x_dev) == y[split["dev"]]).mean())
                cell = {"n_buckets": n_buckets, "ngram_max": ngram_max, "alpha": alpha,
                        "dev_accuracy": round(acc, 5)}
                grid.append(cell)
                print("tune", cell, flush=True)
                if best is None or acc > best[0]:
                    best = (acc, cell, model, x_dev)
            assert best is not None
            per_config.append(best)
    top = max(acc for acc, *_ in per_config)
    acc, cell, model, x_dev = next(c for c in per_config if c[0] >= top - MIN_GAIN)
    tau = fit_temperature(model, x_dev, y[split["dev"]])
    return {"chosen": dict(cell, dev_accuracy=acc, tau=tau), "grid": grid}


def export_weights(model: MultinomialNB, tau: float) -> tuple[Array, Array]:
    """fp16 table [n_buckets + 1, n_labels] (row 0 = padding = 0) and fp32 bias."""
    log_prob = model.feature_log_prob_.T.copy()  # [n_buckets + 1, n_labels]
    log_prob -= log_prob.mean(axis=1, keepdims=True)  # softmax-invariant, keeps fp16 precise
    table = (tau * log_prob).astype(np.float16)
    table[0] = 0
    return table, model.class_log_prior_.astype(np.float32)


def build_onnx(table: Array, bias: Array, meta: dict[str, str]) -> onnx.ModelProto:
    """Gather -> ReduceSum -> Mul(row_scale) -> Add(bias) -> Softmax graph."""
    n_labels = table.shape[1]
    axes = numpy_helper.from_array(np.array([1], dtype=np.int64), "reduce_axes")
    nodes = [
        helper.make_node("Cast", ["weights_f16"], ["weights"], to=TensorProto.FLOAT),
        helper.make_node("Gather", ["weights", "ngram_ids"], ["gathered"], axis=0),
        helper.make_node("ReduceSum", ["gathered", "reduce_axes"], ["summed"], keepdims=0),
        helper.make_node("Mul", ["summed", "row_scale"], ["pooled"]),
        helper.make_node("Add", ["pooled", "bias"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    graph = helper.make_graph(
        nodes, VERSION,
        inputs=[helper.make_tensor_value_info("ngram_ids", TensorProto.INT64, ["batch", "L"]),
                helper.make_tensor_value_info("row_scale", TensorProto.FLOAT, ["batch", 1])],
        outputs=[helper.make_tensor_value_info(
            "probabilities", TensorProto.FLOAT, ["batch", n_labels])],
        initializer=[numpy_helper.from_array(table, "weights_f16"),
                     numpy_helper.from_array(bias, "bias"), axes],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    model.producer_name = PRODUCER
    helper.set_model_props(model, meta)
    onnx.checker.check_model(model)
    return model


def onnx_probabilities(path: Path, texts: Sequence[str], features: dict[str, int]) -> Array:
    """Run the exported model over texts in batches (the runtime code path)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    out = []
    for start in range(0, len(texts), 256):
        ids, scale = char_ngram_ids(texts[start : start + 256], **features)
        out.append(session.run(["probabilities"], {"ngram_ids": ids, "row_scale": scale})[0])
    return np.concatenate(out)


def label_metrics(y_true: Array, y_pred: Array, labels: list[str]) -> dict[str, Any]:
    """Accuracy, macro-F1 (over every label) and per-label precision/recall/F1/support, by the
    runtime's metrics."""
    counts = m.counts_from_confusion(m.confusion_matrix(y_true, y_pred, len(labels)))
    prec, rec, f1 = m.precision_recall_f1(counts)
    confusions: dict[str, int] = defaultdict(int)
    for t, p in zip(y_true, y_pred, strict=True):
        if t != p:
            confusions[f"{labels[t]}->{labels[p]}"] += 1
    return {
        "n": len(y_true),
        "accuracy": round(float((y_true == y_pred).mean()), 5),
        "macro_f1": round(float(f1.mean()), 5),
        "per_label": {
            lab: {"precision": round(float(prec[j]), 4), "recall": round(float(rec[j]), 4),
                  "f1": round(float(f1[j]), 4), "support": int(counts.support[j])}
            for j, lab in enumerate(labels)
        },
        "top_confusions": dict(sorted(confusions.items(), key=lambda kv: -kv[1])[:20]),
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description="Train and export " + VERSION)
    parser.add_argument("--data", type=Path, default=DATA_DIR / "language_lingua.jsonl")
    parser.add_argument("--out", type=Path, default=LANGID_DIR)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Tune, fit, export, verify and write metrics."""
    args = parse_args(argv)
    started = time.process_time()
    rows = load_rows(args.data)
    labels = sorted({r["label"] for r in rows})
    texts = [r["text"] for r in rows]
    y = np.array([labels.index(r["label"]) for r in rows])
    split = split_rows(rows)
    tuning = tune(texts, y, split)
    chosen = tuning["chosen"]
    features = {"n_buckets": chosen["n_buckets"], "ngram_min": NGRAM_MIN,
                "ngram_max": chosen["ngram_max"], "max_chars": MAX_CHARS}
    model = MultinomialNB(alpha=chosen["alpha"]).fit(
        featurise([texts[i] for i in split["train"]], features["n_buckets"],
                  features["ngram_max"]), y[split["train"]])
    table, bias = export_weights(model, chosen["tau"])
    args.out.mkdir(parents=True, exist_ok=True)
    onnx_path = args.out / f"{VERSION}.onnx"
    meta = {"labels": json.dumps(labels), "features": json.dumps(features),
            "featuriser": "stream/langid_features.py:char_ngram_ids"}
    onnx.save(build_onnx(table, bias, meta), str(onnx_path))
    (args.out / "labels.json").write_text(json.dumps(labels, indent=1) + "\n")
    report = evaluate(model, table, bias, chosen["tau"], onnx_path, texts, y, split, labels,
                      features)
    report.update(provenance(args, rows, split, tuning, features, onnx_path, started))
    (args.out / "metrics.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: report[k] for k in ("accuracy", "macro_f1", "onnx_check")}, indent=1))
    return 0 if report["onnx_check"]["passed"] else 1


def evaluate(model: MultinomialNB, table: Array, bias: Array, tau: float,
             onnx_path: Path, texts: list[str], y: Array, split: dict[str, list[int]],
             labels: list[str], features: dict[str, int]) -> dict[str, Any]:
    """Validation metrics plus the ONNX-vs-scikit-learn equivalence check."""
    val_texts = [texts[i] for i in split["val"]]
    x_val = tau * featurise(val_texts, features["n_buckets"], features["ngram_max"])
    exact = model.predict_proba(x_val)  # float64 weights, before the fp16 export
    model.feature_log_prob_ = table.astype(np.float64).T / tau  # the exported weights
    model.class_log_prior_ = bias.astype(np.float64)
    reference = model.predict_proba(x_val)
    served = onnx_probabilities(onnx_path, val_texts, features)
    diff = float(np.abs(served - reference).max())
    pred = served.argmax(axis=1)
    report = label_metrics(y[split["val"]], pred, labels)
    report["onnx_check"] = {
        "max_abs_diff_vs_sklearn": diff, "tolerance": 1e-4, "passed": diff < 1e-4,
        "reference": "MultinomialNB.predict_proba on tau * mean-normalised counts, fp16 weights",
        "fp16_vs_fp64_max_abs_diff": float(np.abs(served - exact).max()),
        "fp16_vs_fp64_prediction_changes": int((exact.argmax(axis=1) != pred).sum()),
    }
    return report


def provenance(args: argparse.Namespace, rows: Sequence[dict[str, Any]],
               split: dict[str, list[int]], tuning: dict[str, Any], features: dict[str, int],
               onnx_path: Path, started: float) -> dict[str, Any]:
    """Where the numbers come from: data hash, split rule, choices, sizes."""
    chosen = tuning["chosen"]
    return {
        "version": VERSION,
        "data": {"file": args.data.name, "sha256": sha256_file(args.data), "rows": len(rows)},
        "seed": SEED,
        "split": {"rule": "per label, sort rows by sha256(f'{salt}:val:{id}'); the first "
                          "round(0.2 * n) are held back for validation; the rest is split "
                          "again the same way with tag 'dev' into fit/dev for tuning",
                  "salt": SPLIT_SALT, **{k: len(v) for k, v in split.items()}},
        "model": {"type": "MultinomialNB on length-normalised hashed char n-gram counts",
                  "alpha": chosen["alpha"], "tau": round(chosen["tau"], 4),
                  "dev_accuracy": round(chosen["dev_accuracy"], 5), "weights": "float16"},
        "features": features,
        "tuning_grid": tuning["grid"],
        "onnx": {"file": onnx_path.name, "sha256": sha256_file(onnx_path),
                 "bytes": onnx_path.stat().st_size, "opset": OPSET},
        "train_cpu_seconds": round(time.process_time() - started, 1),
    }


if __name__ == "__main__":
    sys.exit(main())
