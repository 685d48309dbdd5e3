"""Champion/challenger windows: agreement, label distributions and PSI, by hand-computed cases."""

from __future__ import annotations

import math

import pytest

from stream.core.outputs import ShadowRecord, Signal
from stream.models.shadow import eval_folder, psi
from stream.windows.aggregator import WindowAggregator
from stream.windows.kinds import TumblingWindow

REFERENCE = {"predicted": {"ham": 0.9, "spam": 0.1},
             "histograms": {"spam": [9, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                            "ham": [1, 0, 0, 0, 0, 0, 0, 0, 0, 9]}}


def signal(model: str, label: str, spam: float) -> Signal:
    return Signal(model=model, label=label, score=max(spam, 1 - spam),
                  scores={"ham": 1 - spam, "spam": spam})


def test_psi_is_zero_for_equal_distributions_and_matches_the_formula() -> None:
    assert psi({"a": 3, "b": 1}, {"a": 0.75, "b": 0.25}) == pytest.approx(0.0, abs=1e-6)
    expected = (0.5 - 0.9) * math.log(0.5 / 0.9) + (0.5 - 0.1) * math.log(0.5 / 0.1)
    assert psi({"ham": 1, "spam": 1}, {"ham": 0.9, "spam": 0.1}) == pytest.approx(expected,
                                                                                     rel=1e-3)


def test_a_window_reports_agreement_distributions_and_drift() -> None:
    folder = eval_folder({"spam-v1": REFERENCE})
    windows = WindowAggregator({}, (TumblingWindow(60_000),), grace_ms=0, folder=folder)
    pairs = [("ham", 0.05, "ham", 0.10), ("spam", 0.95, "ham", 0.40),
             ("ham", 0.02, "ham", 0.01), ("spam", 0.99, "spam", 0.97)]
    for i, (label_a, p_a, label_b, p_b) in enumerate(pairs):
        record = ShadowRecord("spam", i * 1000, f"e-{i}", f"c-{i}",
                              signal("spam-v1", label_a, p_a),
                              signal("spam-v2", label_b, p_b)).to_json()
        assert windows.update("spam", record, partition=0) == []
    [closed] = windows.flush()
    assert closed["task"] == "spam" and closed["count"] == 4
    assert closed["models"] == {"champion": "spam-v1", "challenger": "spam-v2"}
    assert closed["agreement_rate"] == 0.75
    assert closed["label_distribution"] == {"champion": {"ham": 0.5, "spam": 0.5},
                                            "challenger": {"ham": 0.75, "spam": 0.25}}
    champion_drift = closed["psi"]["champion"]
    assert champion_drift["labels"] == pytest.approx(
        psi({"ham": 2, "spam": 2}, REFERENCE["predicted"]), abs=1e-6)
    assert champion_drift["scores"] > 0
    assert closed["psi"]["challenger"] is None   # spam-v2 has no stored reference
