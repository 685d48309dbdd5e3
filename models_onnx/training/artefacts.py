"""What a head run leaves behind: <task>.labels/metrics/reference.json, the provenance block, and
its manifest entry (a `stream.models.manifest.ManifestEntry`, the runtime's own contract)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import sklearn

from models_onnx.training.catalogue import FAMILIES
from models_onnx.training.common import Array, Row, write_json
from models_onnx.training.estimators import DIM, INPUT_SCALE, SEED
from models_onnx.training.head_onnx import OPSET
from models_onnx.training.pools import Corpora, Pool
from models_onnx.training.splits import SALT, SPLIT_RULE
from stream.models.manifest import ManifestEntry
from stream.models.onnx_session import sha256_of

SCRIPT = "models_onnx/training/heads.py"  # run as python -m models_onnx.training.heads


@dataclass
class Context:
    """What every head needs: the corpora, the lingua probe sample, the output folder."""

    corpora: Corpora
    probe_rows: list[Row]
    probe_x: Array
    out: Path

    @property
    def encoder(self) -> str:
        return self.corpora.cache.spec.version

    def version(self, task: str, kind: str) -> str:
        return FAMILIES[self.encoder].version(task, kind)


def provenance(ctx: Context, files: Sequence[str], used: Sequence[str], pool: Pool,
               started: float) -> dict[str, Any]:
    """Inputs, split rule, seed, sizes and library versions behind one head."""
    return {"data_considered": ctx.corpora.hashes(files), "data_used": list(used),
            "script": SCRIPT, "seed": SEED, "split": SPLIT_RULE,
            "salt": SALT, "rows": {"train": int((~pool.is_val).sum()),
                                   "val_scored": int((pool.is_val & pool.target).sum())},
            "encoder": {"version": ctx.corpora.cache.spec.version,
                        "sha256": ctx.corpora.cache.spec.sha256},
            "input_scale": INPUT_SCALE, "libraries": {
                "scikit-learn": sklearn.__version__, "numpy": np.__version__,
                "onnx": onnx.__version__, "onnxruntime": ort.__version__},
            "opset": OPSET, "train_cpu_seconds": round(time.process_time() - started, 1)}


def write_outputs(out: Path, task: str, labels: Sequence[str] | None, metrics: Mapping[str, Any],
                  reference: Mapping[str, Any], stem: str | None = None) -> None:
    """<stem>.labels.json (unless None), .metrics.json and .reference.json; stem = task."""
    for name, value in (("labels", labels), ("metrics", metrics), ("reference", reference)):
        if value is not None:
            write_json(out / f"{stem or task}.{name}.json", list(value) if name == "labels"
                       else value)


def head_entry(task: str, version: str, path: Path, labels: Sequence[str], multi_label: bool,
               thresholds: Mapping[str, float], headline: Mapping[str, Any],
               data: Mapping[str, str], *, encoder: str, reference: str | None = None,
               script: str = SCRIPT, **extra: Any) -> ManifestEntry:
    """The manifest entry of one head (paths relative to models_onnx/, the head's folder being
    `path`'s); `encoder` is the embedding version it reads; `extra` fields go after the
    thresholds."""
    folder = path.parent.name
    fields: dict[str, Any] = {
        "encoder": encoder,
        "inputs": {"embedding": f"float32[batch,{DIM}]"},
        "outputs": {"probabilities": f"float32[batch,{len(labels)}]"},
        "labels": f"{folder}/{task}.labels.json", "multi_label": multi_label}
    if thresholds:
        fields["thresholds"] = dict(thresholds)
    fields.update(extra)
    fields.update({"english_only": True, "metrics": dict(headline),
                   "reference": reference or f"{folder}/{task}.reference.json",
                   "provenance": {"data": dict(data), "script": script, "seed": SEED,
                                  "split": SPLIT_RULE}})
    return ManifestEntry(task=task, version=version, kind="head", input="embedding",
                         file=f"{folder}/{path.name}", sha256=sha256_of(path), fields=fields)
