"""Train the sentiment challenger head `sentiment-minilm-mlp-v1` and add it to the manifest.

Same task, labels, data configuration, split and threshold logic as the champion
`sentiment-minilm-lr-v1` (chosen by train_heads.py); the model is the best one-hidden-layer MLP
of the champion's own selection trials, which lost to logistic regression there (an MLP must
win by MLP_MIN_GAIN). Everything is done by the functions of train_heads.py: pools, cross
validation, refit, ONNX graph, verification against scikit-learn, metrics, reference.

Writes models_onnx/heads/: sentiment-minilm-mlp-v1.onnx, sentiment-mlp.metrics.json,
sentiment-mlp.reference.json, and adds (or replaces) the model's entry in
models_onnx/manifest.json `models`; `active` is not changed (run it with SIGNALS_CHALLENGERS).

Usage (from the repository root):
    .venv/bin/python models_onnx/scripts/train_challenger.py [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_heads as th

TASK = "sentiment"
STEM = "sentiment-mlp"  # file stem of metrics / reference, beside the champion's sentiment.*
SCRIPT = "models_onnx/scripts/train_challenger.py"
MANIFEST = th.REPO / "models_onnx" / "manifest.json"


def champion_choice(out: Path) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """The champion's data configuration, its selection block and its best rejected MLP."""
    selection = json.loads((out / f"{TASK}.metrics.json").read_text())["selection"]
    mlps = [t for t in selection["trials"] if t["config"]["kind"] == "mlp"]
    best = max(mlps, key=lambda t: t["dev"])  # first wins ties
    return selection["data"], selection, best


def add_to_manifest(entry: dict[str, Any]) -> None:
    """Insert the entry after its task's champion (replacing one of the same version)."""
    manifest = json.loads(MANIFEST.read_text())  # re-read right before editing
    models = [m for m in manifest["models"] if m["version"] != entry["version"]]
    champion = manifest["active"][TASK]
    at = next(i for i, m in enumerate(models) if m["version"] == champion) + 1
    models.insert(at, entry)
    manifest["models"] = models
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=th.DEFAULT_DATA_DIR)
    parser.add_argument("--out", type=Path, default=th.HEADS_DIR)
    args = parser.parse_args()
    started = time.process_time()
    head = th.sentiment_head()
    data, champion_sel, rejected = champion_choice(args.out)
    cfg = rejected["config"]
    version = f"{TASK}-minilm-{cfg['kind']}-v1"
    cache = th.EmbeddingCache(threads=2)
    probe_rows, probe_x = cache.lingua(args.data_dir)
    ctx = th.Context(th.Corpora(args.data_dir, cache), probe_rows, probe_x, args.out)
    labels = list(head.labels)
    sources = head.data[data]
    pool = ctx.corpora.pool(sources, labels, [k == 0 for k in range(len(sources))])
    selector = th.Selector({data: pool}, head.metric)
    with threadpool_limits(1):
        dev = selector.score(data, cfg)
        oof = selector.results[(data, th.config_name(cfg))][1]
        model, p_val = th.fit_final(pool, cfg)
    thr_info = th.head_thresholds(head, pool, oof)
    thresholds = {k: v["threshold"] for k, v in thr_info.items()}
    graph = th.build_graph([th.layers_of(model, len(labels))], "softmax", version,
                           {"labels": json.dumps(labels), "task": TASK})
    path = args.out / f"{version}.onnx"
    with tempfile.TemporaryDirectory() as tmp:  # save_and_verify deletes other sentiment-minilm-*
        check = th.save_and_verify(graph, Path(tmp) / path.name,
                                   pool.x[pool.is_val & pool.target], p_val)
        shutil.copyfile(Path(tmp) / path.name, path)
    served = th.onnx_probabilities(path, pool.x[pool.is_val & pool.target])
    assert float(np.abs(served - p_val).max()) < th.TOLERANCE, "copied graph differs"

    sel = th.Selection(data, cfg, oof, dev)
    metrics = th.single_metrics(head, pool, p_val, thresholds)
    metrics.update(
        th.single_extras(head, ctx, model, pool, p_val, sel, path, thresholds),
        thresholds=thr_info, onnx_check=check,
        selection={"metric": head.metric, "data": data, "config": cfg, "dev": round(dev, 5),
                   "role": "challenger: the best MLP of the champion's selection trials "
                           f"(dev {rejected['dev']} on {rejected['data']}), cross-validated "
                           "again on the champion's data configuration",
                   "champion": {"version": f"{TASK}-minilm-{champion_sel['config']['kind']}-v1",
                                "config": champion_sel["config"], "dev": champion_sel["dev"]}},
        provenance=dict(th.provenance(ctx, sorted({s.file for s in sources}),
                                      sorted({s.file for s in sources}), pool, started),
                        script=SCRIPT))
    reference = th.reference_distribution(
        {lab: p_val[:, j] for j, lab in enumerate(labels)},
        dict(zip(labels, np.bincount(th.decisions(head, p_val, thresholds),
                                     minlength=len(labels)).tolist(), strict=True)),
        f"validation split of {sources[0].file} ({len(p_val)} rows)")
    for name, value in (("metrics", metrics), ("reference", reference)):
        (args.out / f"{STEM}.{name}.json").write_text(json.dumps(value, indent=1) + "\n")

    entry = th.manifest_entry(TASK, version, path, labels, False, thresholds,
                              metrics["headline"], ctx.corpora.hashes([s.file for s in sources]))
    entry["reference"] = f"heads/{STEM}.reference.json"
    entry["provenance"]["script"] = SCRIPT
    entry["applies_to"] = ["comment"]
    add_to_manifest(entry)
    print(json.dumps({"version": version, "dev": round(dev, 5), **metrics["headline"],
                      "onnx_max_abs_diff": check["max_abs_diff_vs_sklearn"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
