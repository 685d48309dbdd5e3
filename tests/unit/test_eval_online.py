"""Summaries of champion/challenger windows, weighted by the items each window compared."""

from __future__ import annotations

from typing import Any

import pytest

from stream.evaluation.online import summarise, window_summary


def window(start: int, count: int, agreement: float, champion: dict[str, float],
           psi: float | None) -> dict[str, Any]:
    return {"task": "spam", "window": {"start_ms": start, "end_ms": start + 60_000},
            "count": count, "models": {"champion": "spam-v1", "challenger": "spam-v2"},
            "agreement_rate": agreement,
            "label_distribution": {"champion": champion, "challenger": {"ham": 1.0}},
            "psi": {"champion": None if psi is None else {"labels": psi, "scores": 0.0},
                    "challenger": None}}


def test_agreement_and_distributions_are_weighted_by_window_size() -> None:
    [summary] = summarise([window(0, 10, 1.0, {"ham": 1.0}, 0.1),
                           window(60_000, 30, 0.5, {"ham": 0.5, "spam": 0.5}, 0.3)])
    assert summary["windows"] == 2 and summary["count"] == 40
    assert summary["agreement_rate"] == pytest.approx((10 * 1.0 + 30 * 0.5) / 40)
    assert summary["label_distribution"]["champion"] == pytest.approx(
        {"ham": (10 + 15) / 40, "spam": 15 / 40})
    assert summary["psi"]["champion"] == pytest.approx({"mean_labels_psi": 0.2,
                                                        "max_labels_psi": 0.3})
    assert summary["psi"]["challenger"] is None
    assert (summary["first_window_ms"], summary["last_window_ms"]) == (0, 120_000)
    lines = window_summary([summary])
    assert lines[0] == "spam: spam-v1 vs spam-v2: 40 items in 2 windows, agreement 0.625"


def test_no_records_says_what_to_check() -> None:
    assert "SIGNALS_CHALLENGERS" in window_summary(summarise([]))[0]
