"""Train the sentiment challenger head `sentiment-minilm-mlp-v1` and add it to the manifest.

Same task, labels, data configuration, split and threshold logic as the champion
`sentiment-minilm-lr-v1` (chosen by `models_onnx.training.heads`); the model is the best
one-hidden-layer MLP of the champion's own selection trials, which lost to logistic regression
there (an MLP must win by MLP_MIN_GAIN). Everything is done by the champion's own functions
(`models_onnx.training`): pools, cross validation, refit, ONNX graph, verification against
scikit-learn, metrics, reference.

Writes models_onnx/heads/: sentiment-minilm-mlp-v1.onnx, sentiment-mlp.metrics.json,
sentiment-mlp.reference.json, and adds (or replaces) the model's entry in
models_onnx/manifest.json `models`; `active` is not changed (run it with SIGNALS_CHALLENGERS).

Usage (from the repository root):
    .venv/bin/python -m models_onnx.training.challenger [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from models_onnx.training import single
from models_onnx.training.artefacts import Context, head_entry, provenance, write_outputs
from models_onnx.training.catalogue import Head, sentiment_head
from models_onnx.training.common import DATA_DIR, HEADS_DIR, MODELS_DIR, Array
from models_onnx.training.embed import EmbeddingCache
from models_onnx.training.estimators import Config, config_name
from models_onnx.training.head_onnx import TOLERANCE, onnx_probabilities
from models_onnx.training.pools import Corpora, Pool
from models_onnx.training.selection import Selection, Selector, fit_final
from stream.models.manifest import ManifestEntry, load_manifest, upsert_entry

ENCODER = "minilm-l6-v2-int8-v1"
TASK = "sentiment"
STEM = "sentiment-mlp"  # file stem of metrics / reference, beside the champion's sentiment.*
SCRIPT = "models_onnx/training/challenger.py"  # run as python -m models_onnx.training.challenger
MANIFEST = MODELS_DIR / "manifest.json"


def champion_choice(out: Path) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """The champion's data configuration, its selection block and its best rejected MLP."""
    selection = json.loads((out / f"{TASK}.metrics.json").read_text())["selection"]
    mlps = [t for t in selection["trials"] if t["config"]["kind"] == "mlp"]
    best = max(mlps, key=lambda t: t["dev"])  # first wins ties
    return selection["data"], selection, best


def add_to_manifest(entry: ManifestEntry) -> None:
    """Insert the entry after its task's champion (replacing one of the same version)."""
    champion = load_manifest(MANIFEST).active[TASK]  # re-read right before editing
    upsert_entry(MANIFEST, entry, activate=False, after=champion)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--out", type=Path, default=HEADS_DIR)
    return parser.parse_args(argv)


def export_copy(head: Head, version: str, model: Any, pool: Pool, p_val: Array,
                path: Path) -> dict[str, Any]:
    """Export and check in a temporary folder, then copy beside the champion and re-check."""
    with tempfile.TemporaryDirectory() as tmp:
        check = single.export_single(head, version, model, pool, p_val, Path(tmp) / path.name)
        shutil.copyfile(Path(tmp) / path.name, path)
    served = onnx_probabilities(path, pool.x[pool.is_val & pool.target])
    assert float(np.abs(served - p_val).max()) < TOLERANCE, "copied graph differs"
    return check


def selection_block(head: Head, data: str, cfg: Config, dev: float, rejected: dict[str, Any],
                    champion_sel: dict[str, Any]) -> dict[str, Any]:
    return {"metric": head.metric, "data": data, "config": cfg, "dev": round(dev, 5),
            "role": "challenger: the best MLP of the champion's selection trials "
                    f"(dev {rejected['dev']} on {rejected['data']}), cross-validated "
                    "again on the champion's data configuration",
            "champion": {"version": f"{TASK}-minilm-{champion_sel['config']['kind']}-v1",
                         "config": champion_sel["config"], "dev": champion_sel["dev"]}}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.process_time()
    head = sentiment_head()
    data, champion_sel, rejected = champion_choice(args.out)
    cfg = rejected["config"]
    version = f"{TASK}-minilm-{cfg['kind']}-v1"
    cache = EmbeddingCache(threads=2, encoder=ENCODER)  # the champion's encoder, not the active
    probe_rows, probe_x = cache.lingua(args.data_dir)
    ctx = Context(Corpora(args.data_dir, cache), probe_rows, probe_x, args.out)
    sources = head.data[data]
    pool = ctx.corpora.pool(sources, list(head.labels), [k == 0 for k in range(len(sources))])
    selector = Selector({data: pool}, head.metric)
    with threadpool_limits(1):
        dev = selector.score(data, cfg)
        oof = selector.results[(data, config_name(cfg))][1]
        model, p_val = fit_final(pool, cfg)
    thr_info = single.head_thresholds(head, pool, oof)
    thresholds = {k: v["threshold"] for k, v in thr_info.items()}
    path = args.out / f"{version}.onnx"
    check = export_copy(head, version, model, pool, p_val, path)
    files = sorted({s.file for s in sources})
    metrics = single.single_metrics(head, pool, p_val, thresholds)
    metrics.update(
        single.single_extras(head, ctx, model, pool, p_val, Selection(data, cfg, oof, dev),
                             path, thresholds),
        thresholds=thr_info, onnx_check=check,
        selection=selection_block(head, data, cfg, dev, rejected, champion_sel),
        provenance=dict(provenance(ctx, files, files, pool, started), script=SCRIPT))
    reference = single.head_reference(head, p_val, thresholds, f"validation split of "
                                      f"{sources[0].file} ({len(p_val)} rows)")
    write_outputs(args.out, TASK, None, metrics, reference, stem=STEM)
    entry = head_entry(TASK, version, path, head.labels, False, thresholds, metrics["headline"],
                       ctx.corpora.hashes([s.file for s in sources]),
                       encoder=ctx.encoder, reference=f"heads/{STEM}.reference.json",
                       script=SCRIPT)
    add_to_manifest(dataclasses.replace(entry, fields={**entry.fields,
                                                       "applies_to": ["comment"]}))
    print(json.dumps({"version": version, "dev": round(dev, 5), **metrics["headline"],
                      "onnx_max_abs_diff": check["max_abs_diff_vs_sklearn"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
