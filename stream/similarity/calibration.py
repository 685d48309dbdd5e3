"""The near-duplicate threshold, calibrated on labelled pairs derived from the shared corpora.

Nothing is copied into the repository: `build_pairs` derives the set at run time from
``../shared/datasets`` (`CORPORA`) and only the numbers (threshold, metrics, provenance) are kept,
in a report beside the encoder (``models_onnx/encoder/<version>.near_duplicates.json``), and the
threshold in the encoder's manifest entry (``near_duplicate_threshold``): cosines of one encoder
mean nothing for another (MiniLM-L6's copies sit above 0.80, e5-small's unrelated same-topic
texts already reach 0.85), so each encoder carries its own.

* **Positives** are an original text and an edited copy of it, with the edits re-posters make
  (`EDITS`): typos, case, punctuation, appended hashtags, an appended URL, a copy under another
  title (title replaced, description kept), a trimmed copy and a copy with a line prepended.
* **Hard negatives** are two *different* texts of the same label (same news topic, podcast
  category, comment class) — for each original, the most similar such text by exact cosine, the
  pair most likely to be mistaken for a copy.

Items are split in two by a hash of their id: the threshold is chosen on the calibration half
(the lowest cosine that flags at most `TARGET_FALSE_FLAG_RATE` of the hard negatives there: a
near-duplicate flag accuses a creator of copying, so false flags come first) and the report's
precision, recall and false-flag rate are measured on the held-out half.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from stream.errors import ConfigError, InputFileError
from stream.models.manifest import load_manifest
from stream.settings import Settings

PER_FILE, ORIGINALS = 400, 60   # items sampled per corpus, originals per kind (the CLI defaults)
THRESHOLD_KEY = "near_duplicate_threshold"   # in an encoder's manifest entry
REPORT_KEY = "near_duplicate_calibration"     # the report's path, relative to models_onnx/


def carried_calibration(manifest_path: Path, version: str, sha256: str) -> dict[str, Any]:
    """The calibration fields of the listed entry `version` when its file is still `sha256`:
    what a re-export of the same bytes keeps (a changed file needs a new calibration)."""
    spec = next((s for s in load_manifest(manifest_path).models if s.version == version), None)
    if spec is None or spec.sha256 != sha256:
        return {}
    return {key: spec.raw[key] for key in (THRESHOLD_KEY, REPORT_KEY) if key in spec.raw}


def shipped_threshold(settings: Settings, encoder: str | None = None) -> float:
    """SIGNALS_NEAR_DUPLICATE_THRESHOLD when set, else the calibrated threshold of `encoder`
    (default: the one SIGNALS_PROFILE runs, else the active one) from its manifest entry."""
    if settings.near_duplicate_threshold is not None:
        return settings.near_duplicate_threshold
    manifest = load_manifest(settings.manifest_path)
    spec = manifest.resolve("embedding", encoder or manifest.profile(settings.profile).get(
        "embedding"))
    value = spec.extra(THRESHOLD_KEY)
    if not isinstance(value, int | float):
        raise ConfigError(f"encoder {spec.version} has no calibrated {THRESHOLD_KEY} in "
                          f"{settings.manifest_path}; run `signals similar --calibrate --record` "
                          "or set SIGNALS_NEAR_DUPLICATE_THRESHOLD")
    return float(value)


# At most this share of items may be flagged against their nearest *different* item of the same
# label: the near_duplicate signal compares each item with its nearest earlier one, so this is
# the false-flag rate per original item. (Precision over the pair set depends on how many
# copies it holds; this rate does not.)
TARGET_FALSE_FLAG_RATE = 0.01
# (file, kind of item) - the kinds the index compares: catalogue texts and comments
CORPORA = (("news_topic_ag.jsonl", "episode"), ("podcast_category_spotify.jsonl", "show"),
           ("podcast_explicit.jsonl", "show"), ("sentiment_tweeteval.jsonl", "comment"),
           ("spam_sms.jsonl", "comment"))


@dataclass(frozen=True, slots=True)
class Item:
    id: str
    label: str
    kind: str
    title: str
    body: str

    @property
    def text(self) -> str:
        """The text the encoder reads, as `ContentEvent.model_text` joins it."""
        return ". ".join(p for p in (self.title.strip(), self.body.strip()) if p)


@dataclass(frozen=True, slots=True)
class Pair:
    original: str     # item id
    left: str
    right: str
    duplicate: bool
    edit: str         # the edit of a positive, "same-label" for a hard negative
    split: str        # "calibration" or "held_out"


def load_items(folder: Path, per_file: int, seed: int) -> list[Item]:
    """A seeded sample of `per_file` items of each corpus (the files are read in place)."""
    items: list[Item] = []
    for name, kind in CORPORA:
        path = folder / name
        if not path.is_file():
            continue
        rows = [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
        random.Random(f"{seed}:{name}").shuffle(rows)
        for row in rows[:per_file]:
            title, body = row.get("title") or "", row.get("description") or ""
            if not (title or body):
                title, body = "", row["text"]
            items.append(Item(row["id"], f"{name}:{row['label']}", kind, title, body))
    return items


def _typos(rng: random.Random, text: str, rate: float = 0.03) -> str:
    chars = list(text)
    for _ in range(max(1, int(len(chars) * rate))):
        i = rng.randrange(len(chars))
        op = rng.randrange(3)
        if op == 0 and i + 1 < len(chars):
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
        elif op == 1:
            chars[i] = ""
        else:
            chars[i] = chars[i] + rng.choice("aeiorstn")
    return "".join(chars)


def _case(rng: random.Random, text: str) -> str:
    return text.upper() if rng.random() < 0.5 else text.lower()


def _punctuation(rng: random.Random, text: str) -> str:
    stripped = re.sub(r"[^\w\s]", "", text)
    return stripped + rng.choice(["!!!", " ...", "?!", " :)"])


def _hashtags(rng: random.Random, text: str) -> str:
    tags = rng.sample(["#podcast", "#news", "#fyp", "#viral", "#mustlisten", "#trending",
                       "#repost", "#new"], 3)
    return f"{text} {' '.join(tags)}"


def _url(rng: random.Random, text: str) -> str:
    slug = "".join(rng.choice("abcdefghjkmnpqrstuvwxyz0123456789") for _ in range(6))
    return f"{text} {rng.choice(['https://bit.ly/', 'http://tinyurl.com/', 'https://t.co/'])}{slug}"


def _trimmed(rng: random.Random, text: str) -> str:
    words = text.split()
    keep = max(3, int(len(words) * 0.8))
    return " ".join(words[:keep])


def _prefixed(rng: random.Random, text: str) -> str:
    return rng.choice(["Reposting this: ", "Must listen! ", "NEW: ", "Check this out - "]) + text


EDITS: dict[str, Callable[[random.Random, str], str]] = {
    "typos": _typos, "case": _case, "punctuation": _punctuation, "hashtags": _hashtags,
    "url": _url, "trimmed": _trimmed, "prefixed": _prefixed}


def split_of(item_id: str) -> str:
    digest = hashlib.sha256(item_id.encode()).digest()[0]
    return "calibration" if digest % 2 == 0 else "held_out"


def derive_pairs(folder: Path, embed: Callable[[list[str]], np.ndarray], *, per_file: int,
                 originals: int, seed: int) -> tuple[list[Item], list[Pair],
                                                     dict[str, np.ndarray]]:
    """The labelled pairs of the corpora in `folder` (calibrate and eval alike): the items, the
    pairs, the vectors; an InputFileError naming the folder when it holds none of them."""
    if not folder.is_dir():
        raise InputFileError(f"--datasets-dir {folder} does not exist (the shared corpora are "
                             "read in place)")
    items = load_items(folder, per_file, seed)
    if not items:
        raise InputFileError(f"no corpus of stream.similarity.calibration.CORPORA in {folder}")
    pairs, embedded = build_pairs(items, embed, originals_per_kind=originals, seed=seed)
    return items, pairs, embedded


def build_pairs(items: Sequence[Item], embed: Callable[[list[str]], np.ndarray], *,
                originals_per_kind: int, seed: int) -> tuple[list[Pair], dict[str, np.ndarray]]:
    """Positives (edited copies) and hard negatives (nearest same-label other item) of a seeded
    choice of originals; returns the pairs and the embedding of every text they mention."""
    rng = random.Random(seed)
    texts = {item.id: item.text for item in items}
    by_kind: dict[str, list[Item]] = defaultdict(list)
    for item in items:
        by_kind[item.kind].append(item)
    originals = [item for kind_items in by_kind.values()
                 for item in rng.sample(kind_items, min(originals_per_kind, len(kind_items)))]
    pairs: list[Pair] = []
    for item in originals:
        for edit, apply in EDITS.items():
            copy_id = f"{item.id}~{edit}"
            texts[copy_id] = apply(rng, item.text)
            pairs.append(Pair(item.id, item.id, copy_id, True, edit, split_of(item.id)))
        if item.title and item.body:   # re-titled copy: another item's title on this body
            other = rng.choice([o for o in by_kind[item.kind] if o.id != item.id and o.title])
            copy_id = f"{item.id}~retitled"
            texts[copy_id] = f"{other.title}. {item.body}"
            pairs.append(Pair(item.id, item.id, copy_id, True, "retitled", split_of(item.id)))
    ids = list(texts)
    vectors = embed([texts[i] for i in ids])
    embedded = dict(zip(ids, vectors, strict=True))
    labels = {item.id: item.label for item in items}
    pool = [item.id for item in items]
    pool_matrix = np.stack([embedded[i] for i in pool])
    seen: set[frozenset[str]] = set()
    for item in items:   # every item's nearest different text of its label: what the signal sees
        scores = pool_matrix @ embedded[item.id]
        same = [(float(scores[j]), pool[j]) for j in range(len(pool))
                if pool[j] != item.id and labels[pool[j]] == item.label
                and texts[pool[j]].strip().lower() != item.text.strip().lower()]
        if not same:
            continue
        nearest = max(same)[1]
        if frozenset((item.id, nearest)) not in seen:
            seen.add(frozenset((item.id, nearest)))
            pairs.append(Pair(item.id, item.id, nearest, False, "same-label",
                              split_of(item.id)))
    return pairs, embedded


def precision_recall(scores: np.ndarray, truth: np.ndarray, threshold: float) -> dict[str, Any]:
    predicted = scores >= threshold
    tp = int(np.sum(predicted & truth))
    fp = int(np.sum(predicted & ~truth))
    fn = int(np.sum(~predicted & truth))
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
            "true_positives": tp, "false_positives": fp, "false_negatives": fn}


def choose_threshold(scores: np.ndarray, truth: np.ndarray, target: float) -> float:
    """The lowest cosine on a 0.01 grid that flags at most `target` of the negatives."""
    negatives = scores[~truth]
    for candidate in np.round(np.arange(0.50, 1.0, 0.01), 2):
        if float(np.mean(negatives >= candidate)) <= target:
            return float(candidate)
    return 1.0


def calibrate(pairs: Sequence[Pair], embedded: dict[str, np.ndarray],
              target_false_flag_rate: float = TARGET_FALSE_FLAG_RATE) -> dict[str, Any]:
    """The threshold chosen on the calibration half, scored on the held-out half."""
    scored = Scored.of(pairs, embedded)
    threshold = choose_threshold(scored.scores[scored.cal], scored.truth[scored.cal],
                                 target_false_flag_rate)
    return {
        "threshold": threshold, "target_false_flag_rate": target_false_flag_rate,
        "pairs": scored.counts(), "calibration": scored.rates(scored.cal, threshold),
        "held_out": scored.rates(scored.held, threshold),
        "held_out_by_edit": scored.by_edit(threshold),
        "held_out_at": {f"{t:.2f}": scored.rates(scored.held, t)
                        for t in (0.70, 0.75, 0.80, 0.85, 0.90)},
    }


def held_out_report(pairs: Sequence[Pair], embedded: dict[str, np.ndarray],
                    threshold: float) -> dict[str, Any]:
    """Precision, recall and false flags of the held-out half at a given (the shipped)
    threshold: what `signals eval --near-duplicates` reports."""
    scored = Scored.of(pairs, embedded)
    return {"threshold": threshold, "pairs": scored.counts(),
            "held_out": scored.rates(scored.held, threshold),
            "held_out_by_edit": scored.by_edit(threshold)}


@dataclass(frozen=True)
class Scored:
    """Every pair's cosine, truth, split and edit, as arrays."""

    pairs: Sequence[Pair]
    scores: np.ndarray
    truth: np.ndarray
    cal: np.ndarray
    held: np.ndarray

    @classmethod
    def of(cls, pairs: Sequence[Pair], embedded: dict[str, np.ndarray]) -> Scored:
        split = np.array([p.split for p in pairs])
        return cls(pairs, np.array([float(embedded[p.left] @ embedded[p.right]) for p in pairs]),
                   np.array([p.duplicate for p in pairs]), split == "calibration",
                   split == "held_out")

    def counts(self) -> dict[str, int]:
        return {"calibration": int(self.cal.sum()), "held_out": int(self.held.sum()),
                "positives": int(self.truth.sum()), "hard_negatives": int((~self.truth).sum())}

    def rates(self, mask: np.ndarray, at: float) -> dict[str, Any]:
        out = precision_recall(self.scores[mask], self.truth[mask], at)
        negatives = self.scores[mask & ~self.truth]
        out["false_flag_rate"] = round(float(np.mean(negatives >= at)), 4)
        return out

    def by_edit(self, threshold: float) -> dict[str, dict[str, Any]]:
        per_edit = {}
        for edit in sorted({p.edit for p in self.pairs}):
            mask = self.held & np.array([p.edit == edit for p in self.pairs])
            if not mask.any():
                continue
            values = self.scores[mask]
            key = "flagged_rate" if edit == "same-label" else "recall"
            per_edit[edit] = {"pairs": int(mask.sum()),
                              key: round(float(np.mean(values >= threshold)), 4),
                              "median_cosine": round(float(np.median(values)), 4)}
        return per_edit
