"""A single-label (softmax) head end to end: select, refit, threshold, export, verify, document;
its manifest entry."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from models_onnx.training.artefacts import Context, head_entry, provenance, write_outputs
from models_onnx.training.catalogue import Head
from models_onnx.training.common import Array, r4
from models_onnx.training.estimators import Estimator, predict
from models_onnx.training.head_onnx import build_graph, layers_of, save_and_verify
from models_onnx.training.pools import Pool
from models_onnx.training.probes import language_breakdown, lingua_probe
from models_onnx.training.reports import label_report, reference_block, top_k_accuracy
from models_onnx.training.selection import (
    Selection,
    Selector,
    choose_threshold,
    fit_final,
    selection_report,
)
from stream.evaluation.metrics import average_precision, pr_curve
from stream.models.manifest import ManifestEntry
from stream.models.shadow import reference_distribution


def decisions(head: Head, p: Array, thresholds: Mapping[str, float]) -> Array:
    """Argmax, or for a thresholded binary head: the positive label iff p >= threshold."""
    if head.threshold_label is None:
        return np.asarray(p.argmax(1))
    j = head.labels.index(head.threshold_label)
    return np.where(p[:, j] >= thresholds[head.threshold_label], j, 1 - j)


def head_thresholds(head: Head, pool: Pool, oof: Array) -> dict[str, dict[str, Any]]:
    """The chosen threshold of the thresholded label, from out-of-fold predictions."""
    if head.threshold_label is None:
        return {}
    rows = ~pool.is_val & pool.target
    j = head.labels.index(head.threshold_label)
    return {head.threshold_label: choose_threshold(pool.y[rows] == j, oof[rows, j],
                                                   pool.weights()[rows])}


def secondary_scores(head: Head, ctx: Context, model: Estimator) -> dict[str, Any]:
    """Accuracy on other validation rows (argmax over all labels, or only over the labels
    their corpus defines)."""
    out = {}
    for name, (src, restrict) in head.secondary.items():
        pool = ctx.corpora.pool([src], list(head.labels), [True])
        val = pool.is_val
        present = sorted({head.labels.index(lab) for lab in src.mapping.values()}
                         if restrict else range(len(head.labels)))
        p = predict(model, pool.x[val], len(head.labels))[:, present]
        pred = np.array(present)[p.argmax(1)]
        out[name] = {"n": int(val.sum()), "accuracy": r4((pred == pool.y[val]).mean())}
    return out


def single_metrics(head: Head, pool: Pool, p_val: Array,
                   thresholds: Mapping[str, float]) -> dict[str, Any]:
    """The validation report of a softmax head."""
    y = pool.y[pool.is_val & pool.target]
    report = label_report(y, decisions(head, p_val, thresholds), head.labels)
    headline = {"accuracy": report["accuracy"], "macro_f1": report["macro"]["f1"],
                "macro_recall": report["macro"]["recall"]}
    if head.task == "topic":
        headline["top3_accuracy"] = top_k_accuracy(y, p_val, 3)
    if head.threshold_label:
        lab = head.threshold_label
        j = head.labels.index(lab)
        headline.update({f"{lab}_{k}": report["per_label"][lab][k]
                         for k in ("precision", "recall", "f1")})
        headline[f"{lab}_average_precision"] = r4(average_precision(pr_curve(y == j,
                                                                             p_val[:, j])))
        report["argmax_decisions"] = label_report(y, p_val.argmax(1), head.labels)["per_label"]
    if head.reference:
        report["reference_comparison"] = reference_block(
            head.reference, y, decisions(head, p_val, thresholds))
    return {"headline": headline, **report}


def single_extras(head: Head, ctx: Context, model: Estimator, pool: Pool, p_val: Array,
                  sel: Selection, path: Path, thresholds: Mapping[str, float]) -> dict[str, Any]:
    """Secondary validation sets and the non-English probes."""
    extra: dict[str, Any] = {
        "secondary_validation": secondary_scores(head, ctx, model),
        "non_english_probe": lingua_probe(
            path, head.labels, ctx.probe_rows, ctx.probe_x,
            decide=lambda p: decisions(head, p, thresholds))}
    if head.task == "topic":
        extra["language_breakdown"] = language_breakdown(pool, p_val, sel.oof)
    return extra


def head_pools(head: Head, ctx: Context) -> dict[str, Pool]:
    """One pool per candidate data configuration; the first source of each is scored."""
    return {name: ctx.corpora.pool(srcs, list(head.labels), [k == 0 for k in range(len(srcs))])
            for name, srcs in head.data.items()}


def export_single(head: Head, version: str, model: Estimator, pool: Pool, p_val: Array,
                  path: Path) -> dict[str, Any]:
    """The softmax graph of `model`, saved to `path` and checked on the scored val rows."""
    labels = list(head.labels)
    graph = build_graph([layers_of(model, len(labels))], "softmax", version,
                        {"labels": json.dumps(labels), "task": head.task})
    return save_and_verify(graph, path, pool.x[pool.is_val & pool.target], p_val)


def head_reference(head: Head, p_val: Array, thresholds: Mapping[str, float],
                   population: str) -> dict[str, Any]:
    """The drift reference of a softmax head: its validation probabilities and decisions."""
    counts = np.bincount(decisions(head, p_val, thresholds), minlength=len(head.labels))
    return reference_distribution({lab: p_val[:, j] for j, lab in enumerate(head.labels)},
                                  dict(zip(head.labels, counts.tolist(), strict=True)),
                                  population)


def train_single(head: Head, ctx: Context) -> ManifestEntry:
    """Select, refit, export, verify and document one softmax head; its manifest entry."""
    started = time.process_time()
    print(f"== {head.task}", flush=True)
    selector = Selector(head_pools(head, ctx), head.metric)
    sel = selector.run()
    pool = selector.pools[sel.data]
    model, p_val = fit_final(pool, sel.config)
    version = ctx.version(head.task, sel.config["kind"])
    thr_info = head_thresholds(head, pool, sel.oof)
    thresholds = {k: v["threshold"] for k, v in thr_info.items()}
    path = ctx.out / f"{version}.onnx"
    check = export_single(head, version, model, pool, p_val, path)
    metrics = single_metrics(head, pool, p_val, thresholds)
    extra = single_extras(head, ctx, model, pool, p_val, sel, path, thresholds)
    files = sorted({s.file for srcs in head.data.values() for s in srcs})
    used = sorted({s.file for s in head.data[sel.data]})
    metrics.update(extra, thresholds=thr_info, onnx_check=check, selection=selection_report(
        selector, sel), provenance=provenance(ctx, files, used, pool, started))
    reference = head_reference(head, p_val, thresholds, f"validation split of "
                               f"{head.data[sel.data][0].file} ({len(p_val)} rows)")
    write_outputs(ctx.out, head.task, head.labels, metrics, reference)
    return head_entry(head.task, version, path, head.labels, False, thresholds,
                      metrics["headline"], ctx.corpora.hashes(used), encoder=ctx.encoder)
