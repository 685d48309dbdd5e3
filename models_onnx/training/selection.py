"""Model choice by cross-validation on the training part (`Selector.run`, the documented rule),
the refit on the whole training part, the data ablation, and the threshold rule."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import precision_recall_curve

from models_onnx.training.common import Array, r4
from models_onnx.training.estimators import (
    SCORERS,
    Config,
    Estimator,
    config_name,
    cross_val,
    dev_score,
    fit,
    lr_config,
    predict,
)
from models_onnx.training.pools import Pool

MLP_MIN_GAIN = 0.005  # an MLP must beat the best logistic regression by this dev score
STAGE1_C = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3)  # logistic regression C on scaled embeddings
STAGE2_C_FACTORS = (1 / 3, 1.0, 3.0)  # around the stage-1 C, with and without class balancing
MLP_GRID = tuple({"kind": "mlp", "hidden": 256, "alpha": a} for a in (0.1, 1.0))
THRESHOLD_BETA = 0.5
THRESHOLD_RULE = (
    "max F0.5 (precision weighted over recall) on the precision-recall curve of the "
    "out-of-fold (4-fold cross-validated) predictions of the training part, each source corpus "
    "weighted equally; the validation split is not used, so the validation numbers are not "
    "tuned on. F0.5 rather than F1: the corpora are far more positive than platform traffic, "
    "and at the max-F1 points the hate sigmoid flagged ~21 % of ordinary English news "
    "sentences")


@dataclass
class Selection:
    """What cross-validation chose, and everything it tried."""

    data: str
    config: Config
    oof: Array
    dev: float
    tried: list[dict[str, Any]] = field(default_factory=list)
    data_configs: list[dict[str, Any]] = field(default_factory=list)


class Selector:
    """Cross-validated scores of (data configuration, model configuration) pairs, memoised."""

    def __init__(self, pools: Mapping[str, Pool], metric: str) -> None:
        self.pools = pools
        self.metric = metric
        self.results: dict[tuple[str, str], tuple[float, Array, Config]] = {}

    def score(self, data: str, cfg: Config) -> float:
        key = (data, config_name(cfg))
        if key not in self.results:
            started = time.monotonic()
            oof = cross_val(self.pools[data], cfg)
            dev = dev_score(self.pools[data], oof, self.metric)
            self.results[key] = (dev, oof, cfg)
            print(f"    cv {data:<24} {key[1]:<40} {self.metric} {dev:.4f} "
                  f"({time.monotonic() - started:.0f}s)", flush=True)
        return self.results[key][0]

    def best(self, data: str, kind: str | None = None) -> tuple[float, Config]:
        """Best scored configuration of one data configuration (first wins ties)."""
        scored = [(dev, cfg) for (d, _), (dev, _, cfg) in self.results.items()
                  if d == data and (kind is None or cfg["kind"] == kind)]
        top = max(dev for dev, _ in scored)
        return next((dev, cfg) for dev, cfg in scored if dev == top)

    def first_best(self, key: Any) -> str:
        """The data configuration with the highest `key` (first listed wins ties)."""
        names = list(self.pools)
        return max(names, key=lambda d: (key(d), -names.index(d)))

    def stage2(self, data: str, c_star: float) -> Config:
        """LR around `c_star` with/without balancing and the MLP grid; the MLP must win by
        MLP_MIN_GAIN."""
        for factor in STAGE2_C_FACTORS:
            for weight in (None, "balanced"):
                self.score(data, lr_config(c_star * factor, weight))
        for cfg in MLP_GRID:
            self.score(data, cfg)
        lr_dev, lr_cfg = self.best(data, "lr")
        mlp_dev, mlp_cfg = self.best(data, "mlp")
        return mlp_cfg if mlp_dev > lr_dev + MLP_MIN_GAIN else lr_cfg

    def run(self) -> Selection:
        """Stage 1: every data configuration with LR over STAGE1_C (unweighted); the best
        data configuration (first listed wins ties). Stage 2 on it: LR at the stage-1 C times
        STAGE2_C_FACTORS with/without class balancing, and MLP_GRID; an MLP must win by
        MLP_MIN_GAIN. Stage 3: every data configuration with the stage-2 model configuration;
        the best one is used (first listed wins ties)."""
        for data in self.pools:
            for c in STAGE1_C:
                self.score(data, lr_config(c))
        stage1 = {data: self.best(data) for data in self.pools}
        data = self.first_best(lambda d: stage1[d][0])
        cfg = self.stage2(data, stage1[data][1]["C"])
        for other in self.pools:
            self.score(other, cfg)
        data = self.first_best(lambda d: self.score(d, cfg))
        tried = [{"data": d, "config": c, "dev": round(v, 5)}
                 for (d, _), (v, _, c) in self.results.items()]
        return Selection(data, cfg, self.results[(data, config_name(cfg))][1],
                         self.score(data, cfg), tried,
                         [{"data": d, "stage1_config": stage1[d][1],
                           "dev": round(stage1[d][0], 5)} for d in self.pools])


def fit_final(pool: Pool, cfg: Config) -> tuple[Estimator, Array]:
    """Refit on the whole training part; probabilities on the scored validation rows."""
    train = ~pool.is_val
    model = fit(cfg, pool.x[train], pool.y[train])
    val = pool.is_val & pool.target
    return model, predict(model, pool.x[val], len(pool.labels))


def ablation(selector: Selector, selection: Selection) -> list[dict[str, Any]]:
    """Every data configuration with its stage-1 model and with the chosen model: dev (CV)
    and validation scores. Reported only; the choice was made on the dev scores."""
    out = []
    for entry in selection.data_configs:
        pool = selector.pools[entry["data"]]
        val = pool.is_val & pool.target
        row = dict(entry, train_rows=int((~pool.is_val).sum()),
                   chosen=entry["data"] == selection.data)
        for tag, cfg in (("stage1_config", entry["stage1_config"]),
                         ("chosen_config", selection.config)):
            _, p_val = fit_final(pool, cfg)
            row[f"val_{tag}"] = round(SCORERS[selector.metric](
                pool.y[val], p_val, pool.weights()[val]), 5)
            row[f"dev_{tag}"] = round(selector.score(entry["data"], cfg), 5)
        del row["dev"]
        out.append(row)
    return out


def selection_report(selector: Selector, sel: Selection) -> dict[str, Any]:
    """The chosen configuration, every cross-validated trial and the data ablation."""
    return {"metric": selector.metric, "data": sel.data, "config": sel.config,
            "dev": round(sel.dev, 5), "rule": Selector.run.__doc__,
            "data_configurations": ablation(selector, sel), "trials": sel.tried}


def pr_point(prec: Array, rec: Array, thr: Array, i: int) -> dict[str, float]:
    f1 = 2 * prec[i] * rec[i] / max(prec[i] + rec[i], 1e-12)
    return {"threshold": r4(thr[i]), "dev_precision": r4(prec[i]), "dev_recall": r4(rec[i]),
            "dev_f1": r4(f1)}


def choose_threshold(y: Array, p: Array, w: Array) -> dict[str, Any]:
    """The max-F0.5 point of the (source-weighted) out-of-fold precision-recall curve; the
    max-F1 point and the lowest threshold with precision >= 0.9 are kept for reference.
    (scikit-learn's curve: the runtime's `pr_curve` has no row weights.)"""
    prec, rec, thr = precision_recall_curve(y, p, sample_weight=w)
    prec, rec = prec[:-1], rec[:-1]
    b2 = THRESHOLD_BETA**2
    fbeta = (1 + b2) * prec * rec / np.maximum(b2 * prec + rec, 1e-12)
    f1 = 2 * prec * rec / np.maximum(prec + rec, 1e-12)
    high = np.flatnonzero(prec >= 0.9)
    best = pr_point(prec, rec, thr, int(np.argmax(fbeta)))
    return dict(best, dev_f05=r4(fbeta.max()),
                max_f1=pr_point(prec, rec, thr, int(np.argmax(f1))),
                precision_0_9=pr_point(prec, rec, thr, int(high[0])) if len(high) else None)
