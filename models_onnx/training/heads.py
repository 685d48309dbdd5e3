"""Train, export and document the classification heads that read the sentence embedding.

Heads (all: input ``embedding`` float32[batch,384] -> output ``probabilities``):
  topic      19 Apple Podcasts genres (softmax), iTunes titles (+ mapped Spotify / news rows)
  safety     offensive, hate, explicit (independent sigmoids, one per label, each fitted only on
             the rows of the corpora that define it, stacked into one graph) + thresholds
  sentiment  negative / neutral / positive (softmax), TweetEval (+ 2-class review corpora)
  spam       ham / spam (softmax) + a threshold on p(spam)
  emotion    anger / joy / optimism / sadness (softmax), TweetEval

Embeddings come from `models_onnx.training.embed` (the runtime encoder, cached in /tmp/cs-emb).

Protocol, fixed before anything is tuned (see `models_onnx.training.splits`):
  * every dataset file is split once, per original label, by sha256(f"{SALT}:{id}"): the first
    20 % of each label's rows (in hash order) are the held-back validation split; the rest is
    the training part, dealt round-robin (in hash order, per label) into 4 folds;
  * all choices (data combination, model family and hyper-parameters, thresholds) use 4-fold
    cross-validation on the training part only: fit on three folds of every corpus used, score
    the out-of-fold predictions of the target corpus;
  * model choice (`selection.Selector.run`): logistic regression over C for every data combination,
    then around the best C with/without class balancing plus a one-hidden-layer MLP (it must
    win by MLP_MIN_GAIN), then every data combination again with the chosen model;
  * thresholds (safety labels, spam): the max-F0.5 point of the out-of-fold precision-recall
    curve, every source corpus weighted equally (`selection.choose_threshold`, THRESHOLD_RULE);
  * the chosen configuration is refitted on the whole training part and scored once on the
    validation split of the target corpus; those are the reported numbers. The ONNX graph
    must reproduce scikit-learn's probabilities on it within 1e-4 or the script fails.

Writes models_onnx/<family folder>/ (``heads`` for the MiniLM v1 heads, ``heads-e5`` for the
e5-small-v2 v2 heads; `catalogue.FAMILIES`): <version>.onnx, <task>.labels.json,
<task>.metrics.json, <task>.reference.json (10-bin score histograms for drift monitoring) and
manifest_entries.json (entries for models_onnx/manifest.json; with --only, the other tasks' entries
are kept).

The modules, in the order a run uses them: `catalogue` (what each head is trained on), `pools`
(rows, splits, embeddings), `estimators` and `selection` (fit, cross-validate, choose, threshold),
`head_onnx` (export and check), `reports` and `probes` (metrics.json), `single` and `safety` (one
head end to end), `artefacts` (output files, manifest entries).

Usage (from the repository root):
    .venv/bin/python -m models_onnx.training.heads [--encoder VERSION] [--only TASK]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from threadpoolctl import threadpool_limits

from models_onnx.training.artefacts import Context
from models_onnx.training.catalogue import (
    FAMILIES,
    emotion_head,
    sentiment_head,
    spam_head,
    topic_head,
)
from models_onnx.training.common import DATA_DIR, MODELS_DIR, write_json
from models_onnx.training.embed import EmbeddingCache
from models_onnx.training.pools import Corpora
from models_onnx.training.safety import train_safety
from models_onnx.training.single import train_single
from stream.models.manifest import ManifestEntry

HEADS: dict[str, Callable[[Context], ManifestEntry]] = {
    "topic": lambda ctx: train_single(topic_head(), ctx),
    "safety": train_safety,
    "sentiment": lambda ctx: train_single(sentiment_head(), ctx),
    "spam": lambda ctx: train_single(spam_head(), ctx),
    "emotion": lambda ctx: train_single(emotion_head(), ctx),
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train and export the embedding heads.")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--only", choices=sorted(HEADS), action="append",
                        help="train only this head (repeatable); other manifest entries stay")
    parser.add_argument("--encoder", choices=sorted(FAMILIES),
                        help="train on this embedding version (default: the active one)")
    parser.add_argument("--out", type=Path, help="output folder (default: the encoder's "
                        "family folder under models_onnx/, e.g. heads-e5)")
    parser.add_argument("--threads", type=int, default=2, help="encoder threads (cache misses)")
    return parser.parse_args(argv)


def merge_entries(path: Path, new: Sequence[ManifestEntry]) -> list[ManifestEntry]:
    """Replace the entries of the retrained tasks, keep the others, in HEADS order."""
    old = [ManifestEntry.from_json(e) for e in json.loads(path.read_text())] \
        if path.is_file() else []
    by_task = {e.task: e for e in old} | {e.task: e for e in new}
    return [by_task[t] for t in HEADS if t in by_task]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    cache = EmbeddingCache(threads=args.threads, encoder=args.encoder)
    out = args.out or MODELS_DIR / FAMILIES[cache.spec.version].folder
    probe_rows, probe_x = cache.lingua(args.data_dir)
    out.mkdir(parents=True, exist_ok=True)
    ctx = Context(Corpora(args.data_dir, cache), probe_rows, probe_x, out)
    entries = []
    with threadpool_limits(1):
        for task in args.only or list(HEADS):
            entries.append(HEADS[task](ctx))
            print(json.dumps({"task": task, **entries[-1].fields["metrics"]}), flush=True)
    manifest = out / "manifest_entries.json"
    write_json(manifest, [e.to_json() for e in merge_entries(manifest, entries)])
    print(f"done in {time.monotonic() - started:.0f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
