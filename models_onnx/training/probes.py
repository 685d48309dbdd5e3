"""How a head behaves off its training distribution: the same sentences in several languages
(the lingua probe), and topic accuracy split by what the language model says about the input."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from models_onnx.training.common import LANGID_DIR, Array, Row, r4
from models_onnx.training.estimators import accuracy
from models_onnx.training.head_onnx import onnx_probabilities
from models_onnx.training.pools import Pool
from stream.models.langid_features import char_ngram_ids

LANGID_MODEL = LANGID_DIR / "langid-charngram-v1.onnx"
PROBE_SAMPLE = ("language_lingua.jsonl: 150 sentences per language (Leipzig corpora "
                "news/web sentences), same rows for every head")


def detect_languages(texts: Sequence[str]) -> tuple[list[str], Array] | None:
    """Top language and its probability per text, by the project's langid model (or None)."""
    if not (LANGID_MODEL.is_file() and (LANGID_DIR / "metrics.json").is_file()):
        return None
    labels = json.loads((LANGID_DIR / "labels.json").read_text())
    features = json.loads((LANGID_DIR / "metrics.json").read_text())["features"]
    session = ort.InferenceSession(str(LANGID_MODEL), providers=["CPUExecutionProvider"])
    probs = []
    for start in range(0, len(texts), 512):
        ids, scale = char_ngram_ids(texts[start : start + 512], **features)
        probs.append(session.run(["probabilities"], {"ngram_ids": ids, "row_scale": scale})[0])
    p = np.concatenate(probs)
    return [labels[i] for i in p.argmax(1)], p.max(1)


def lingua_probe(path: Path, labels: Sequence[str], sample: Sequence[Row], x: Array,
                 decide: Callable[[Array], Array] | None = None,
                 thresholds: Mapping[str, float] | None = None) -> dict[str, Any]:
    """How the head behaves on the same kind of sentence in several languages: mean top
    probability and most frequent predictions (single-label), or positive rates (multi-label)."""
    probs = onnx_probabilities(path, x)
    langs = np.array([r["label"] for r in sample])
    out: dict[str, Any] = {}
    for lang in dict.fromkeys(langs):
        p = probs[langs == lang]
        if decide is not None:
            counts = np.bincount(decide(p), minlength=len(labels)) / len(p)
            top = np.argsort(-counts)[:3]
            out[str(lang)] = {"n": len(p), "mean_top_probability": r4(p.max(1).mean()),
                              "top_predictions": {labels[j]: r4(counts[j]) for j in top}}
        elif thresholds is not None:
            out[str(lang)] = {"n": len(p), "positive_rate": {
                lab: r4((p[:, j] >= thresholds[lab]).mean()) for j, lab in enumerate(labels)}}
    return {"sample": PROBE_SAMPLE, "by_language": out}


def group_scores(pool: Pool, mask: Array, p_val: Array, oof: Array,
                 lang: Array) -> dict[str, Any]:
    """Validation and out-of-fold accuracy of the target rows in `mask`, and their languages."""
    val, train = pool.is_val & pool.target, ~pool.is_val & pool.target
    v, t = mask[val], mask[train]
    return {
        "val_rows": int(v.sum()), "val_accuracy": r4(accuracy(pool.y[val][v], p_val[v], v))
        if v.any() else None,
        "train_rows_oof": int(t.sum()), "oof_accuracy": r4(accuracy(
            pool.y[train][t], oof[train][t], t)) if t.any() else None,
        "languages": dict(sorted(((str(k), int(n)) for k, n in zip(
            *np.unique(lang[mask & pool.target], return_counts=True), strict=True)),
            key=lambda kv: -kv[1])[:8])}


def language_breakdown(pool: Pool, p_val: Array, oof: Array) -> dict[str, Any]:
    """Topic accuracy on target rows the langid model calls English vs confidently not."""
    detected = detect_languages(pool.texts)
    if detected is None:
        return {"skipped": "models_onnx/language is absent"}
    lang, conf = np.array(detected[0]), detected[1]
    groups = {"english": lang == "en", "non_english_p>=0.99": (lang != "en") & (conf >= 0.99),
              "non_english_p<0.99": (lang != "en") & (conf < 0.99)}
    out: dict[str, Any] = {"rule": "language = top label of langid-charngram-v1 on the head's "
                                   "input text (title. publisher); below p 0.99 a non-English "
                                   "call on a short title is often an English title or a name"}
    for name, mask in groups.items():
        out[name] = group_scores(pool, mask, p_val, oof, lang)
    return out
