"""The near-duplicate calibration: its metrics on hand-made scores, the edits, and that the
shipped threshold is the calibrated one (each encoder's, in its manifest entry)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from stream.errors import ConfigError
from stream.models.manifest import load_manifest
from stream.settings import Settings
from stream.similarity.calibration import (
    EDITS,
    REPORT_KEY,
    THRESHOLD_KEY,
    Item,
    build_pairs,
    calibrate,
    choose_threshold,
    precision_recall,
    shipped_threshold,
)


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


def test_every_encoder_ships_the_threshold_its_own_calibration_chose() -> None:
    settings = Settings()
    encoders = [s for s in load_manifest(settings.manifest_path).models if s.task == "embedding"]
    assert len(encoders) >= 2
    for spec in encoders:
        calibration = json.loads(spec.resolve_path(spec.extra(REPORT_KEY)).read_text())
        assert spec.extra(THRESHOLD_KEY) == pytest.approx(calibration["threshold"])
        assert calibration["provenance"]["encoder"] == spec.version
        held = calibration["held_out"]
        assert held["false_flag_rate"] <= 0.02 and held["precision"] >= 0.95
        assert shipped_threshold(settings, spec.version) == spec.extra(THRESHOLD_KEY)
    active = load_manifest(settings.manifest_path).resolve("embedding")
    assert shipped_threshold(settings) == active.extra(THRESHOLD_KEY)


def test_the_setting_overrides_the_encoders_threshold_and_an_uncalibrated_one_is_named(
        tmp_path: Path) -> None:
    settings = Settings()
    assert shipped_threshold(settings.replace(near_duplicate_threshold=0.5)) == 0.5
    manifest = json.loads(settings.manifest_path.read_text())
    for entry in manifest["models"]:
        entry.pop(THRESHOLD_KEY, None)
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    bare = settings.replace(models_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"has no calibrated near_duplicate_threshold.*--record"):
        shipped_threshold(bare)
