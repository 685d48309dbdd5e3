"""The near-duplicate calibration: its metrics on hand-made scores, the edits, and that the
shipped threshold is the calibrated one (stream/similarity/calibration.json)."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from stream.settings import Settings
from stream.similarity.calibration import (
    EDITS,
    Item,
    build_pairs,
    calibrate,
    choose_threshold,
    precision_recall,
)
from stream.similarity.cli import CALIBRATION_FILE


def test_precision_recall_and_the_chosen_threshold() -> None:
    scores = np.array([0.99, 0.95, 0.85, 0.70, 0.90, 0.60, 0.50, 0.40])
    truth = np.array([True, True, True, True, False, False, False, False])
    assert precision_recall(scores, truth, 0.8) == {
        "precision": 0.75, "recall": 0.75, "f1": 0.75, "true_positives": 3,
        "false_positives": 1, "false_negatives": 1}
    # the lowest 0.01 step that flags no negative (target 0): just above the 0.90 negative
    assert choose_threshold(scores, truth, 0.0) == 0.91
    assert choose_threshold(scores, truth, 0.25) == 0.61   # one negative in four may pass


def test_every_edit_changes_the_text_deterministically() -> None:
    text = "The Quantum Ledger: how zero-knowledge proofs keep a blockchain private, episode 12"
    for name, edit in EDITS.items():
        once, again = edit(random.Random(1), text), edit(random.Random(1), text)
        assert once == again and once != text, name


def test_pairs_and_calibration_on_a_toy_corpus() -> None:
    items = [Item(f"i-{n}", f"label-{n % 2}", "show", f"Title {n}", f"body number {n} " * 5)
             for n in range(12)]
    vectors: dict[str, np.ndarray] = {}

    def embed(texts: list[str]) -> np.ndarray:   # a stand-in encoder: similar text, similar vector
        out = []
        for text in texts:
            rng = np.random.default_rng(sum(map(ord, text.lower()[:12])))
            out.append(rng.standard_normal(384))
        matrix = np.asarray(out, dtype=np.float32)
        return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)

    pairs, embedded = build_pairs(items, embed, originals_per_kind=4, seed=0)
    vectors.update(embedded)
    positives = [p for p in pairs if p.duplicate]
    negatives = [p for p in pairs if not p.duplicate]
    assert len(positives) == 4 * (len(EDITS) + 1)        # every edit plus a re-titled copy
    assert negatives and all(p.edit == "same-label" for p in negatives)
    assert all(p.split in ("calibration", "held_out") for p in pairs)
    result = calibrate(pairs, vectors)
    assert 0.5 <= result["threshold"] <= 1.0
    assert set(result["held_out"]) >= {"precision", "recall", "false_flag_rate"}


def test_the_shipped_threshold_is_the_calibrated_one() -> None:
    calibration = json.loads(CALIBRATION_FILE.read_text())
    assert Settings().near_duplicate_threshold == pytest.approx(calibration["threshold"])
    held = calibration["held_out"]
    assert held["false_flag_rate"] <= 0.02 and held["precision"] >= 0.95
    assert "datasets_dir" in calibration["provenance"]
