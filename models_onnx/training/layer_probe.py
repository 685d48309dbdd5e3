"""Would a shallower e5-small-v2 keep the default's quality? (issue #11: the default at 5x a
naive agent needs an encoder with about 60 % of e5-small-v2's work per item.)

e5-small-v2's committed graph (`models_onnx/encoder/e5-small-v2.int8.onnx`) is cut after layer
k (the mean pooling and normalisation read that layer's output instead of the last one; nothing
else changes, no weight is touched) for every k in ``--layers``, and each depth goes through
`encoder_probe`'s frozen probe (logistic regression, balanced, C by 4-fold CV on the training
part only, the same capped corpora and validation split), the full depth too, in the same run.
Per task: each depth's headline metric on the validation split and its difference from the full
depth with a paired bootstrap 95 % interval (the same validation rows, resampled together), and
each depth's encoding rate (texts/s, one thread; noisy on a shared machine, the ratios matter).

    .venv/bin/python -m models_onnx.training.layer_probe [--layers 6,8,10]

Writes models_onnx/encoder/layer_probe.json (data hashes, seed, wall time). Probe numbers, not
shipped heads' (those combine corpora and tune thresholds): a depth that loses here loses there.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV

from models_onnx.training.common import DATA_DIR, MODELS_DIR, r4, write_json
from models_onnx.training.encoder_probe import CAPS, TASKS, score, task_rows, text_of
from stream.models.encoder import TextEncoder
from stream.models.manifest import load_manifest
from stream.models.onnx_session import sha256_of

ENCODER = "e5-small-v2-int8-v1"
FULL = 12
POOLING_INPUT = "last_hidden_state"   # what the appended mean pooling reads (export_jar_encoder)
OUT = MODELS_DIR / "encoder" / "layer_probe.json"


def cut_after(graph: onnx.ModelProto, layers: int) -> bytes:
    """The encoder graph whose pooling reads layer `layers`' output; unused nodes dropped."""
    if layers == FULL:
        return bytes(graph.SerializeToString())
    cut = onnx.ModelProto()
    cut.CopyFrom(graph)
    source = f"/encoder/layer.{layers - 1}/output/LayerNorm/Add_1_output_0"
    for node in cut.graph.node:
        node.input[:] = [source if name == POOLING_INPUT else name for name in node.input]
    needed = {out.name for out in cut.graph.output}
    kept = []
    for node in reversed(cut.graph.node):   # the graph is topologically sorted
        if needed & set(node.output):
            kept.append(node)
            needed |= set(node.input)
    del cut.graph.node[:]
    cut.graph.node.extend(reversed(kept))
    initializers = [t for t in cut.graph.initializer if t.name in needed]
    del cut.graph.initializer[:]
    cut.graph.initializer.extend(initializers)
    return bytes(cut.SerializeToString())


def depth_encoder(layers: int, folder: Path) -> TextEncoder:
    """The runtime encoder (prefix, tokenizer, buckets of 8) on e5-small-v2 cut after `layers`;
    the cut graph is written to `folder`, and its sha256 is what the runtime checks."""
    spec = load_manifest(MODELS_DIR / "manifest.json").resolve("embedding", ENCODER)
    path = folder / f"e5-small-v2.layers-{layers}.onnx"
    path.write_bytes(cut_after(onnx.load(str(spec.file)), layers))
    cut = dataclasses.replace(spec, file=path, sha256=sha256_of(path))
    return TextEncoder(cut, threads=1, bucket_size=8)


def fit_predict(x: np.ndarray, labels: np.ndarray, is_val: np.ndarray) -> np.ndarray:
    """encoder_probe's probe: balanced logistic regression, C by 4-fold CV on training rows."""
    search = GridSearchCV(LogisticRegression(max_iter=3000, class_weight="balanced"),
                          {"C": [0.3, 1, 3, 10, 30]}, cv=4, scoring="f1_macro", n_jobs=1)
    search.fit(x[~is_val], labels[~is_val])
    return np.asarray(search.predict(x[is_val]))


def paired_difference(metric: str, truth: np.ndarray, full: np.ndarray,
                      other: np.ndarray) -> list[float]:
    """95 % interval of metric(other) - metric(full) over the same resampled rows."""
    rng = np.random.default_rng(0)
    draws = []
    for _ in range(1000):
        i = rng.integers(0, len(truth), len(truth))
        draws.append(score(metric, truth[i], other[i]) - score(metric, truth[i], full[i]))
    return [r4(np.percentile(draws, 2.5)), r4(np.percentile(draws, 97.5))]


def probe_task(task: str, depths: dict[int, TextEncoder], rates: dict[int, list[float]]
               ) -> dict[str, Any]:
    metric, mapping = TASKS[task]
    rows, is_val = task_rows(task)
    labels = np.array([mapping[r["label"]] if mapping else r["label"] for r in rows])
    texts = [text_of(r) for r in rows]
    predictions = {}
    for layers, depth in depths.items():
        started = time.perf_counter()
        x = depth.encode(texts)
        rates[layers].append(len(texts) / (time.perf_counter() - started))
        predictions[layers] = fit_predict(x, labels, is_val)
    truth = labels[is_val]
    result: dict[str, Any] = {"metric": metric, "n_val": int(is_val.sum()),
                              "n_train": int((~is_val).sum())}
    for layers, predicted in predictions.items():
        entry: dict[str, Any] = {"value": r4(score(metric, truth, predicted))}
        if layers != FULL:
            entry["minus_full"] = r4(entry["value"] - score(metric, truth, predictions[FULL]))
            entry["minus_full_ci95"] = paired_difference(metric, truth, predictions[FULL],
                                                         predicted)
        result[f"layers_{layers}"] = entry
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", default="6,8,10", help="depths to cut at (1-11)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    cuts = sorted({int(k) for k in args.layers.split(",")})
    if not all(1 <= k < FULL for k in cuts):
        parser.error(f"--layers {args.layers}: give depths between 1 and {FULL - 1}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="layer-probe-") as folder:
        depths = {layers: depth_encoder(layers, Path(folder)) for layers in [FULL, *cuts]}
        rates: dict[int, list[float]] = {layers: [] for layers in depths}
        tasks = {}
        for task in TASKS:
            tasks[task] = probe_task(task, depths, rates)
            print(task, tasks[task], flush=True)
    write_json(args.out, {
        "encoder": ENCODER, "layers": [FULL, *cuts], "tasks": tasks,
        "texts_per_s_one_thread": {str(k): r4(float(np.mean(v))) for k, v in rates.items()},
        "setup": {"seed": 0, "bootstrap": 1000, "caps": CAPS, "bucket_size": 8,
                  "data_sha256": {t: hashlib.sha256((DATA_DIR / f"{t}.jsonl").read_bytes())
                                  .hexdigest() for t in TASKS},
                  "wall_s": round(time.perf_counter() - started, 1)}})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
