"""Compare langid-charngram-v1 with py3langid and pycld2 on the held-back validation split.

The split is the one `models_onnx.training.language` holds back (same function). Accuracy and
macro-F1 are reported two ways for every tool:

  * ``all_rows``: every validation row; a row whose label the tool cannot output counts as
    an error, and macro-F1 averages over all 75 labels (unsupported labels score F1 = 0);
  * ``supported_rows``: only rows whose gold label the tool can output, macro-F1 over those
    labels; our model is scored on the same subset for a like-for-like number.

Codes are mapped only where they are aliases of the same language: ``no`` -> ``nb``
(Norwegian macro-language, written Bokmal in most text; generous to the tools), ``iw`` ->
``he``, ``zh-Hant`` -> ``zh``, ``sr-ME`` -> ``sr``. py3langid is run with its default
language set and also restricted (``set_languages``) to the languages that map onto ours.
pycld2 runs with ``bestEffort=True``; on its "invalid UTF-8" error (control characters) the
text is retried without control/surrogate characters, and anything left is "unknown".

Throughput is texts per second on one CPU core (process pinned with sched_setaffinity,
onnxruntime intra/inter-op threads = 1), best of three passes, over the validation texts
as they are and over their first 60 characters. Our model is timed in batches of 256 and
one text at a time, featurisation included; also in batches of texts sorted by length
(less padding), as a caller that groups texts by length would see it.

Usage (from the repository root):
    .venv/bin/python -m models_onnx.training.compare_language [--data PATH] [--out FILE]

(needs py3langid and pycld2 besides the training packages)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import unicodedata
from collections.abc import Callable, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import py3langid
import py3langid.langid
import pycld2

from models_onnx.training import language as tl
from models_onnx.training.common import DATA_DIR, LANGID_DIR
from models_onnx.training.embed import load_rows
from stream.evaluation import metrics as m
from stream.models.langid_features import char_ngram_ids
from stream.models.onnx_session import sha256_of

ALIASES = {"no": "nb", "iw": "he", "zh-Hant": "zh", "sr-ME": "sr"}
UNKNOWN = "un"
BATCH = 256
REPEATS = 3
SHORT_CHARS = 60


def make_ours(model_dir: Path) -> Callable[[Sequence[str], int], list[str]]:
    """Predictor for our ONNX model: texts, batch size -> labels."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model_dir / f"{tl.VERSION}.onnx"), options,
                                   providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    features = json.loads(meta["features"])
    labels = json.loads((model_dir / "labels.json").read_text())

    def predict(texts: Sequence[str], batch: int = BATCH) -> list[str]:
        out: list[str] = []
        for start in range(0, len(texts), batch):
            ids, scale = char_ngram_ids(texts[start : start + batch], **features)
            probs = session.run(["probabilities"], {"ngram_ids": ids, "row_scale": scale})[0]
            out.extend(labels[j] for j in probs.argmax(axis=1))
        return out

    return predict


def py3langid_predict(texts: Sequence[str], batch: int = 1) -> list[str]:
    """py3langid.classify per text, codes mapped through ALIASES."""
    return [ALIASES.get(code, code) for code, _ in map(py3langid.classify, texts)]


def _cld2_one(text: str) -> str:
    """pycld2 best-effort top language for one text."""
    try:
        code = pycld2.detect(text, bestEffort=True)[2][0][1]
    except (pycld2.error, UnicodeEncodeError):
        clean = "".join(c for c in text if unicodedata.category(c) not in ("Cc", "Cs"))
        try:
            code = pycld2.detect(clean, bestEffort=True)[2][0][1]
        except (pycld2.error, UnicodeEncodeError):
            return UNKNOWN
    return ALIASES.get(str(code), str(code))


def pycld2_predict(texts: Sequence[str], batch: int = 1) -> list[str]:
    """pycld2 per text."""
    return [_cld2_one(text) for text in texts]


def scores(gold: Sequence[str], pred: Sequence[str], labels: Sequence[str]) -> dict[str, float]:
    """Accuracy and macro-F1 over the given label set (other predictions are errors), by the
    runtime's metrics: every code outside `labels` is one extra, unscored label."""
    index = {label: j for j, label in enumerate(labels)}
    other = len(labels)
    g, p = (np.array([index.get(c, other) for c in codes], dtype=np.int64)
            for codes in (gold, pred))
    f1 = m.precision_recall_f1(m.counts_from_confusion(m.confusion_matrix(g, p, other + 1)))[2]
    return {"n": len(gold),
            "accuracy": round(float(np.mean([a == b for a, b in zip(gold, pred, strict=True)])),
                              5),
            "macro_f1": round(float(f1[:other].mean()), 5)}


def throughput(predict: Callable[[Sequence[str], int], list[str]], texts: Sequence[str],
               batch: int) -> float:
    """Best-of-REPEATS texts per second."""
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        predict(texts, batch)
        best = min(best, time.perf_counter() - start)
    return round(len(texts) / best, 1)


def supported_by(name: str, labels: Sequence[str]) -> list[str]:
    """Which of our labels a tool can output (after alias mapping)."""
    if name.startswith("py3langid"):
        codes = py3langid.langid._get_identifier().labels
    else:
        codes = [code for _, code in pycld2.LANGUAGES]
    mapped = {ALIASES.get(code, code) for code in codes}
    return [lab for lab in labels if lab in mapped]


def evaluate_tool(name: str, pred: list[str], ours: list[str], gold: list[str],
                  labels: list[str]) -> dict[str, Any]:
    """All-rows and supported-rows scores for one tool (and ours on its subset)."""
    supported = supported_by(name, labels)
    keep = [i for i, g in enumerate(gold) if g in supported]
    sub = ([gold[i] for i in keep], [pred[i] for i in keep], [ours[i] for i in keep])
    return {
        "all_rows": scores(gold, pred, labels),
        "supported_labels": len(supported),
        "unsupported_labels": sorted(set(labels) - set(supported)),
        "supported_rows": scores(sub[0], sub[1], supported),
        "ours_on_supported_rows": scores(sub[0], sub[2], supported),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run all tools on the validation split and write comparison.json."""
    parser = argparse.ArgumentParser(description="Compare language identifiers")
    parser.add_argument("--data", type=Path, default=DATA_DIR / "language_lingua.jsonl")
    parser.add_argument("--model-dir", type=Path, default=LANGID_DIR)
    parser.add_argument("--out", type=Path, default=LANGID_DIR / "comparison.json")
    args = parser.parse_args(argv)
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    rows = load_rows(args.data)
    val = tl.split_rows(rows)["val"]
    texts = [rows[i]["text"] for i in val]
    gold = [rows[i]["label"] for i in val]
    labels = json.loads((args.model_dir / "labels.json").read_text())
    ours = make_ours(args.model_dir)
    result = compare(ours, texts, gold, labels)
    result["setup"] = {"data_sha256": sha256_of(args.data),
                       "split": "val of models_onnx.training.language.split_rows",
                       "aliases": ALIASES, "cpu_cores": 1,
                       "versions": {"py3langid": version("py3langid"), "pycld2": version("pycld2"),
                                    "onnxruntime": ort.__version__}}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result["tools"].items()}, indent=1))
    return 0


def compare(ours: Callable[[Sequence[str], int], list[str]], texts: list[str],
            gold: list[str], labels: list[str]) -> dict[str, Any]:
    """Scores and throughput of every tool."""
    short = [text[:SHORT_CHARS] for text in texts]
    ours_pred = ours(texts, BATCH)
    tools: dict[str, Any] = {
        "langid-charngram-v1": {"all_rows": scores(gold, ours_pred, labels),
                                "texts_per_s": throughput(ours, texts, BATCH),
                                "texts_per_s_60_chars": throughput(ours, short, BATCH),
                                "texts_per_s_length_sorted": throughput(
                                    ours, sorted(texts, key=len), BATCH),
                                "texts_per_s_batch1": throughput(ours, texts, 1),
                                "texts_per_s_60_chars_batch1": throughput(ours, short, 1)},
    }
    for name, predict in (("py3langid", py3langid_predict), ("pycld2", pycld2_predict)):
        tools[name] = evaluate_tool(name, predict(texts, 1), ours_pred, gold, labels)
        tools[name]["texts_per_s"] = throughput(predict, texts, 1)
        tools[name]["texts_per_s_60_chars"] = throughput(predict, short, 1)
    restricted = [c for c in py3langid.langid._get_identifier().labels
                  if ALIASES.get(c, c) in labels]
    py3langid.set_languages(restricted)
    name = "py3langid_restricted"
    tools[name] = evaluate_tool(name, py3langid_predict(texts), ours_pred, gold, labels)
    tools[name]["texts_per_s"] = throughput(py3langid_predict, texts, 1)
    py3langid.set_languages(None)
    return {"n_val": len(texts), "mean_chars": round(float(np.mean([len(t) for t in texts])), 1),
            "tools": tools}


if __name__ == "__main__":
    sys.exit(main())
