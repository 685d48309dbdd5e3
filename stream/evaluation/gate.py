"""The regression gate: compare an evaluation result with a baseline result.

The tolerances live in the model manifest (``models_onnx/manifest.json``)::

    "eval": {"tolerance": {"macro_f1": 0.02, "accuracy": 0.02},
             "gate_metrics": ["accuracy", "macro_f1"]}

For every task of the baseline and every gate metric, the new value may be at most the
tolerance below the baseline's. A task the baseline scored but the new run did not is a
regression too (a gate must not pass because a model stopped running).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from stream.errors import ConfigError, InputFileError
from stream.evaluation.scoring import SCHEMA


@dataclass(frozen=True, slots=True)
class Gate:
    tolerance: dict[str, float]
    metrics: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Regression:
    task: str
    metric: str
    old: float
    new: float | None
    tolerance: float

    def describe(self) -> str:
        if self.new is None:
            return f"{self.task}: {self.metric} was {self.old:.4f}, now not evaluated"
        return (f"{self.task}: {self.metric} {self.old:.4f} -> {self.new:.4f} "
                f"({self.new - self.old:+.4f}; tolerance {self.tolerance})")


def load_gate(manifest_path: Path) -> Gate:
    """The ``eval`` block of the manifest, checked."""
    try:
        data = orjson.loads(manifest_path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read the eval tolerances in {manifest_path}: {exc}") from exc
    block = data.get("eval")
    example = ('"eval": {"tolerance": {"macro_f1": 0.02, "accuracy": 0.02}, '
               '"gate_metrics": ["accuracy", "macro_f1"]}')
    if not isinstance(block, dict) or not isinstance(block.get("tolerance"), dict):
        raise ConfigError(f"{manifest_path} has no eval tolerances for --baseline; add {example}")
    tolerance = {str(k): float(v) for k, v in block["tolerance"].items()}
    metrics = tuple(str(x) for x in block.get("gate_metrics", tolerance))
    missing = [x for x in metrics if x not in tolerance]
    if missing:
        raise ConfigError(f"{manifest_path}: eval.gate_metrics {missing} have no "
                          f"eval.tolerance; add them, e.g. {example}")
    return Gate(tolerance=tolerance, metrics=metrics)


def load_result(path: Path) -> dict[str, Any]:
    """A result JSON written by `signals eval --out` (its ``result.json``)."""
    try:
        data = orjson.loads(path.read_bytes())
    except OSError as exc:
        raise InputFileError(f"cannot read baseline {path}: {exc.strerror}") from exc
    except orjson.JSONDecodeError as exc:
        raise InputFileError(f"baseline {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise InputFileError(f"baseline {path} is not a result of `signals eval` "
                             f"(no \"schema\": \"{SCHEMA}\"); write one with --out DIR")
    return data


def compare(old: dict[str, Any], new: dict[str, Any], gate: Gate) -> list[Regression]:
    regressions = []
    for task, before in sorted(old["tasks"].items()):
        after = new["tasks"].get(task)
        for metric in gate.metrics:
            if metric not in before["metrics"]:
                continue
            was = float(before["metrics"][metric])
            now = None if after is None else after["metrics"].get(metric)
            allowed = gate.tolerance[metric]
            if now is None or float(now) < was - allowed - 1e-12:
                regressions.append(Regression(task, metric, was, now, allowed))
    return regressions


def comparison_notes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What makes a comparison less direct: other data, new tasks, other model versions."""
    notes = []
    if old["data"].get("sha256") != new["data"].get("sha256"):
        notes.append(f"the baseline was computed on other data ({old['data'].get('path')}, "
                     f"{old['data'].get('records')} records)")
    for task in sorted(set(new["tasks"]) - set(old["tasks"])):
        notes.append(f"{task}: not in the baseline, so not gated (`make eval-baseline` adds it)")
    for task in sorted(set(old["tasks"]) & set(new["tasks"])):
        was, now = old["tasks"][task].get("model"), new["tasks"][task].get("model")
        if was != now:
            notes.append(f"{task}: model {was} (baseline) vs {now}")
    return notes
