"""Choose the cascade's minimum confidences and measure its quality/escalation frontier.

The cascade profile (`stream.core.cascade`) serves an item with the static encoder's heads unless
one of its signals is less confident than its task's minimum; then e5-small-v2's heads serve it.
Per task, on the target corpus of each head (`catalogue`), with the committed head files run by
the runtime code (`HeadModel.predict`, `signal_confidence`) on the cached embeddings:

* the minimum is the smallest of GRID whose cascade, on the **training part** (the rows the heads
  were fitted on, predicted out of fold; the validation split is not looked at), scores within
  a tolerance (`--tolerance`, TOLERANCE) of the strong heads alone on every headline metric of
  the task; FRONTIER repeats the choice for other tolerances;
* the **validation split** is scored once with those minimums: static, strong and cascade
  headline metrics, the cascade's difference from the strong heads with a paired bootstrap 95 %
  interval, and the share of rows escalated; plus the whole curve (every minimum of GRID);
* the share of items escalated when every task's minimum applies at once (as in the worker, where
  one unsure head escalates the item) on the comments (TweetEval sentiment) and the shows (iTunes)
  of the validation splits.

Writes models_onnx/cascade/metrics.json and, with --record, the ``cascade`` profile and its
``cascades`` entry in models_onnx/manifest.json. Deterministic (no sampling but the bootstrap,
seeded); run from the repository root:
    .venv/bin/python -m models_onnx.training.cascade [--record]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models_onnx.training.catalogue import (
    FAMILIES,
    SAFETY,
    Head,
    emotion_head,
    sentiment_head,
    spam_head,
    topic_head,
)
from models_onnx.training.common import DATA_DIR, MODELS_DIR, Array, r4, write_json
from models_onnx.training.embed import EmbeddingCache
from models_onnx.training.estimators import cross_val
from models_onnx.training.pools import Corpora, Source
from stream.core.cascade import distance, escalated_rows, signal_confidence
from stream.core.outputs import Signal
from stream.evaluation.metrics import (
    bootstrap_ci,
    counts_from_indicators,
    precision_recall_f1,
    single_label_summary,
)
from stream.models.heads import HeadModel, head_signal
from stream.models.manifest import load_manifest, set_cascade, set_profile

CHEAP, STRONG = "e5-static-v1", "e5-small-v2-int8-v1"
PROFILE = "cascade"
GRID = tuple(round(0.025 * k, 3) for k in range(41))
# How far below the strong heads the cascade may score on the training part (out of fold). The
# recorded profile's: within issue #11's 1 point (0.01) 95 % of the items are escalated anyway,
# so the profile is the point that halves the encoder's work (MODELS.md "The cascade profile");
# FRONTIER lists the others, 0.01 included.
TOLERANCE = 0.05
FRONTIER = (0.0, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1)
OUT = MODELS_DIR / "cascade" / "metrics.json"
Metric = Callable[[Array, Array], dict[str, float]]


@dataclass(frozen=True)
class Unit:
    """One scored decision of a task on its target corpus: truth and both paths' decisions."""

    name: str
    truth: Array
    cheap: Array
    strong: Array
    confidence: Array  # of the cheap signal
    is_val: Array
    metric: Metric

    def scores(self, rows: Array, minimum: float) -> dict[str, float]:
        pred = np.where(self.confidence < minimum, self.strong, self.cheap)
        return self.metric(self.truth[rows], pred[rows])


def single_metric(n_labels: int) -> Metric:
    def metric(truth: Array, pred: Array) -> dict[str, float]:
        summary = single_label_summary(truth, pred, n_labels)
        return {"accuracy": summary["accuracy"], "macro_f1": summary["macro_f1"]}
    return metric


def binary_f1(truth: Array, pred: Array) -> dict[str, float]:
    _, _, f1 = precision_recall_f1(counts_from_indicators(truth[:, None], pred[:, None]))
    return {"f1": float(f1[0])}


class Families:
    """Both encoders' committed heads, their corpora (cached embeddings) and their selections."""

    def __init__(self, data_dir: Path) -> None:
        manifest = load_manifest(MODELS_DIR / "manifest.json")
        self.specs = {enc: {s.task: s for s in manifest.heads_on(enc)} for enc in (CHEAP, STRONG)}
        self.heads = {enc: {task: HeadModel(spec, threads=2) for task, spec in specs.items()}
                      for enc, specs in self.specs.items()}
        self.corpora = {enc: Corpora(data_dir, EmbeddingCache(encoder=enc))
                        for enc in (CHEAP, STRONG)}

    def folder(self, encoder: str) -> Path:
        return MODELS_DIR / FAMILIES[encoder].folder


@dataclass(frozen=True)
class Decisions:
    """One family's decisions on one unit's rows: out-of-fold on the training part (refitted
    with the committed head's configuration), the committed head file on the validation split."""

    truth: Array
    pred: Array
    confidence: Array
    is_val: Array


def single_decisions(families: Families, encoder: str, head: Head,
                     content_type: str) -> Decisions:
    selection = json.loads((families.folder(encoder) / f"{head.task}.metrics.json").read_text())[
        "selection"]
    labels = list(head.labels)
    sources = head.data[selection["data"]]
    pool = families.corpora[encoder].pool(sources, labels, [k == 0 for k in range(len(sources))])
    oof = cross_val(pool, selection["config"])
    model = families.heads[encoder][head.task]
    train, val = pool.target & ~pool.is_val, pool.target & pool.is_val
    signals = [head_signal(row, model.contract, content_type) for row in oof[train]]
    signals += model.predict(pool.x[val], [content_type] * int(val.sum()))
    rows = np.concatenate([np.flatnonzero(train), np.flatnonzero(val)])
    return Decisions(pool.y[rows], np.array([labels.index(s.label) for s in signals]),
                     np.array([signal_confidence(s, model.contract, content_type)
                               for s in signals]), pool.is_val[rows])


def safety_decisions(families: Families, encoder: str, label: str) -> Decisions:
    """One safety label on the corpora that define it. Out of fold, only that label's sigmoid
    is refitted, so a training row's confidence is its distance from that label's threshold; on
    the validation split it is the runtime rule (every label that applies)."""
    content_type = "show" if label == "explicit" else "comment"
    sources = SAFETY[label]
    pool = families.corpora[encoder].pool(sources, ["no", label], [True] * len(sources))
    spec = families.specs[encoder]["safety"]
    oof = cross_val(pool, spec.raw["branches"][label])[:, 1]
    threshold = float(spec.raw["thresholds"][label])
    model = families.heads[encoder]["safety"]
    train, val = ~pool.is_val, pool.is_val
    signals = model.predict(pool.x[val], [content_type] * int(val.sum()))
    pred = np.concatenate([oof[train] >= threshold,
                           [label in (s.flagged or ()) for s in signals]])
    confidence = np.concatenate([[distance(p, threshold) for p in oof[train]],
                                 [signal_confidence(s, model.contract, content_type)
                                  for s in signals]])
    rows = np.concatenate([np.flatnonzero(train), np.flatnonzero(val)])
    return Decisions(pool.y[rows] == 1, pred, confidence, pool.is_val[rows])


def unit_of(name: str, cheap: Decisions, strong: Decisions, metric: Metric) -> Unit:
    if not np.array_equal(cheap.truth, strong.truth):
        raise SystemExit(f"{name}: the two families' rows differ; cannot compare them")
    return Unit(name, cheap.truth, cheap.pred, strong.pred, cheap.confidence, cheap.is_val,
                metric)


def all_units(families: Families) -> dict[str, list[Unit]]:
    out: dict[str, list[Unit]] = {}
    for head, content_type in ((topic_head(), "show"), (sentiment_head(), "comment"),
                               (spam_head(), "comment"), (emotion_head(), "comment")):
        print(f"== {head.task}", flush=True)
        cheap, strong = (single_decisions(families, enc, head, content_type)
                         for enc in (CHEAP, STRONG))
        out[head.task] = [unit_of(head.task, cheap, strong, single_metric(len(head.labels)))]
    out["safety"] = []
    for label in SAFETY:
        print(f"== safety.{label}", flush=True)
        cheap, strong = (safety_decisions(families, enc, label) for enc in (CHEAP, STRONG))
        out["safety"].append(unit_of(f"safety.{label}", cheap, strong, binary_f1))
    return out


def choose_minimum(units: Sequence[Unit], tolerance: float) -> float:
    """The smallest minimum whose cascade is within `tolerance` of the strong heads on the
    training part, on every metric of every unit (1.0, i.e. always escalate, if none is)."""
    for minimum in GRID:
        if all(unit.scores(~unit.is_val, minimum)[k] >= value - tolerance
               for unit in units for k, value in unit.scores(~unit.is_val, 1.01).items()):
            return minimum
    return 1.0


def validation_report(unit: Unit, minimum: float) -> dict[str, Any]:
    rows = np.flatnonzero(unit.is_val)
    cheap, strong = unit.scores(unit.is_val, -1.0), unit.scores(unit.is_val, 1.01)
    cascade = unit.scores(unit.is_val, minimum)

    def difference(sample: Array) -> dict[str, float]:
        chosen = np.zeros(len(unit.truth), dtype=int)
        np.add.at(chosen, rows[sample], 1)   # a resample as row weights: repeat by count
        picked = np.repeat(np.arange(len(unit.truth)), chosen)
        a, b = unit.scores(picked, minimum), unit.scores(picked, 1.01)
        return {k: a[k] - b[k] for k in a}

    ci = bootstrap_ci(difference, len(rows), rounds=500, seed=0)
    return {"rows": len(rows), "escalated": r4((unit.confidence[rows] < minimum).mean()),
            "cheap": rounded(cheap), "strong": rounded(strong), "cascade": rounded(cascade),
            "cascade_minus_strong": {k: r4(cascade[k] - strong[k]) for k in cascade},
            "cascade_minus_strong_ci95": {k: [r4(lo), r4(hi)] for k, (lo, hi) in ci.items()},
            "curve": [{"min_confidence": m, "escalated": r4((unit.confidence[rows] < m).mean()),
                       **rounded(unit.scores(unit.is_val, m))} for m in GRID[::4]]}


def rounded(values: dict[str, float]) -> dict[str, float]:
    return {k: r4(v) for k, v in values.items()}


def union_escalation(families: Families, source: Source, content_type: str,
                     minimums: dict[str, float]) -> dict[str, Any]:
    """The share of a corpus's validation rows the worker would escalate: every cheap head that
    applies to `content_type` runs, and one unsure signal escalates the item (`escalated_rows`)."""
    pool = families.corpora[CHEAP].pool([source], sorted(set(source.mapping.values())),
                                     [True])
    x = pool.x[pool.is_val]
    types = [content_type] * len(x)
    cheap = families.heads[CHEAP]
    per_item: list[dict[str, Signal]] = [{} for _ in types]
    for task, head in cheap.items():
        if content_type in head.contract.applies_to:
            for row, signal in enumerate(head.predict(x, types)):
                per_item[row][task] = signal
    contracts = {task: head.contract for task, head in cheap.items()}
    rows = escalated_rows(per_item, types, contracts, minimums)
    by_task = {task: len(escalated_rows(per_item, types, contracts, {task: minimum})) / len(x)
               for task, minimum in minimums.items()
               if content_type in cheap[task].contract.applies_to}
    return {"corpus": source.file, "content_type": content_type, "rows": len(x),
            "escalated": r4(len(rows) / len(x)), "by_task": rounded(by_task)}


def items_escalated(families: Families, minimums: dict[str, float]) -> list[dict[str, Any]]:
    """The worker's escalation share on comments (TweetEval sentiment) and shows (iTunes)."""
    comments = Source("sentiment_tweeteval.jsonl",
                      {k: k for k in ("negative", "neutral", "positive")})
    shows = next(iter(topic_head().data.values()))[0]
    return [union_escalation(families, comments, "comment", minimums),
            union_escalation(families, shows, "show", minimums)]


def frontier_point(families: Families, units: dict[str, list[Unit]],
                   tolerance: float) -> dict[str, Any]:
    """The minimums one tolerance chooses, the items they escalate and, on the validation split,
    each task's largest loss against the strong heads."""
    minimums = {task: choose_minimum(task_units, tolerance) for task, task_units in units.items()}
    worst = {unit.name: r4(min(unit.scores(unit.is_val, minimums[task])[k] - v
                               for k, v in unit.scores(unit.is_val, 1.01).items()))
             for task, task_units in units.items() for unit in task_units}
    return {"tolerance": tolerance, "min_confidence": minimums,
            "items_escalated": {b["content_type"]: b["escalated"]
                                for b in items_escalated(families, minimums)},
            "validation_worst_loss": worst}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--tolerance", type=float, default=TOLERANCE,
                        help="the recorded minimums' tolerance (default: %(default)s)")
    parser.add_argument("--record", action="store_true",
                        help="write the cascade profile and its minimums into the manifest")
    args = parser.parse_args(argv)
    started = time.monotonic()
    families = Families(args.data_dir)
    units = all_units(families)
    minimums = {task: choose_minimum(task_units, args.tolerance)
                for task, task_units in units.items()}
    report = {
        "cheap": CHEAP, "strong": STRONG, "grid": [GRID[0], GRID[-1], GRID[1] - GRID[0]],
        "tolerance_on_training_part": args.tolerance, "min_confidence": minimums,
        "validation": {unit.name: validation_report(unit, minimums[task])
                       for task, task_units in units.items() for unit in task_units},
        "items_escalated": items_escalated(families, minimums),
        "frontier": [frontier_point(families, units, t) for t in FRONTIER],
        "data": families.corpora[CHEAP].hashes(sorted({s.file for s in sources_used()})),
        "script": "models_onnx/training/cascade.py", "wall_s": round(time.monotonic() - started, 1)}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    write_json(OUT, report)
    for name, block in report["validation"].items():
        print(f"{name:18} escalated {block['escalated']:.3f}  cheap {block['cheap']}  "
              f"strong {block['strong']}  cascade {block['cascade']}", flush=True)
    for point in report["frontier"]:
        print(json.dumps(point), flush=True)
    if args.record:
        manifest = MODELS_DIR / "manifest.json"
        set_profile(manifest, PROFILE, {"embedding": CHEAP})
        set_cascade(manifest, PROFILE, {"encoder": STRONG, "min_confidence": minimums,
                                        "metrics": str(OUT.relative_to(MODELS_DIR))})
    return 0


def sources_used() -> list[Source]:
    heads = (topic_head(), sentiment_head(), spam_head(), emotion_head())
    return [next(iter(h.data.values()))[0] for h in heads] + [
        s for sources in SAFETY.values() for s in sources]


if __name__ == "__main__":
    sys.exit(main())
