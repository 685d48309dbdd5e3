"""Scoring of head signals (multi-label safety, a thresholded spam head), with signals made by the
runtime's own `head_signal` from probability rows; and the writers on such a result."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from stream.evaluation.gate import Gate, compare, comparison_notes
from stream.evaluation.offline import Evaluation, TaskPredictions
from stream.evaluation.report import write_outputs
from stream.evaluation.scoring import ScoreOptions, build_result, score_task
from stream.models.heads import ClassifierSpec, head_signal

SAFETY = ClassifierSpec(task="safety", version="safety-t", labels=("offensive", "hate", "explicit"),
                  multi_label=True, thresholds={"offensive": 0.5, "hate": 0.4, "explicit": 0.5},
                  reliable_languages=frozenset({"en"}))
SPAM = ClassifierSpec(task="spam", version="spam-t", labels=("ham", "spam"), multi_label=False,
                thresholds={"spam": 0.3}, reliable_languages=frozenset({"en"}))


def predictions(spec: ClassifierSpec, rows: list[list[float]], truth: list[tuple[str, ...]],
                reliable: list[bool] | None = None) -> TaskPredictions:
    signals = [head_signal(np.array(row), spec) if ok
               # what the enricher does to an English-only head on non-English text
               else head_signal(np.array(row), spec).unreliable()
               for row, ok in zip(rows, reliable or [True] * len(rows), strict=True)]
    slices = [{"reliable": "yes" if s.is_reliable else "no", "market": "US"} for s in signals]
    return TaskPredictions(spec, list(truth), signals, slices)


SAFETY_ROWS = [[0.9, 0.6, 0.1],   # flags offensive, hate
               [0.7, 0.1, 0.2],   # flags offensive
               [0.2, 0.1, 0.8],   # flags explicit
               [0.1, 0.1, 0.1],   # flags nothing
               [0.6, 0.5, 0.1]]   # flags offensive, hate; made unreliable below
SAFETY_TRUTH: list[tuple[str, ...]] = [("hate", "offensive"), (), ("explicit",), ("offensive",),
                                       ("hate", "offensive")]


def test_multi_label_safety_is_scored_per_label_on_flagged() -> None:
    p = predictions(SAFETY, SAFETY_ROWS, SAFETY_TRUTH, reliable=[True, True, True, True, False])
    scored = score_task(p, ScoreOptions(bootstrap=30, target_recall=1.0))
    outcomes = scored["confusion"]["per_label"]
    # offensive: flagged on rows 0, 1 (row 4 unreliable → nothing flagged); true on 0, 3, 4
    assert outcomes["offensive"] == {"tp": 1, "fp": 1, "fn": 2, "tn": 1}
    assert outcomes["hate"] == {"tp": 1, "fp": 0, "fn": 1, "tn": 3}
    assert outcomes["explicit"] == {"tp": 1, "fp": 0, "fn": 0, "tn": 4}
    assert scored["metrics"]["accuracy"] == pytest.approx(2 / 5)   # rows 0 and 2 entirely right
    assert scored["per_label"]["hate"]["f1"] == pytest.approx(2 / 3)
    assert scored["per_label"]["hate"]["threshold"] == 0.4
    assert scored["pr"]["score_source"] == "scores"
    # recall 1 for offensive needs the threshold down to row 3's 0.1
    point = scored["operating_points"][0]["labels"]["offensive"]
    assert point == {"threshold": 0.1, "precision": 0.6, "recall": 1.0}
    assert sum(b["count"] for b in scored["calibration"]["bins"]) == 5 * 3
    assert scored["slices"]["reliable"]["no"]["n"] == 1


def test_a_thresholded_single_label_head_uses_the_signal_label() -> None:
    rows = [[0.75, 0.25], [0.65, 0.35], [0.9, 0.1], [0.2, 0.8]]
    p = predictions(SPAM, rows, [("ham",), ("spam",), ("ham",), ("spam",)])
    assert [s.label for s in p.signals] == ["ham", "spam", "ham", "spam"]  # 0.35 >= 0.3
    scored = score_task(p, ScoreOptions(bootstrap=0))
    assert scored["metrics"]["accuracy"] == 1.0
    assert scored["confusion"] == {"labels": ["ham", "spam"], "matrix": [[2, 0], [0, 2]]}
    assert scored["ci95"] == {}
    assert scored["per_label"]["spam"]["average_precision"] == 1.0


def evaluation(tmp_path: Path) -> Evaluation:
    data = tmp_path / "d.jsonl"
    data.write_text("{}\n")
    return Evaluation(
        path=data, sha256="0" * 64, records=9, versions={"safety": "safety-t", "spam": "spam-t"},
        tasks={"safety": predictions(SAFETY, SAFETY_ROWS, SAFETY_TRUTH),
               "spam": predictions(SPAM, [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.8, 0.2]],
                                   [("ham",), ("spam",), ("ham",), ("spam",)])},
        rejected=[{"line": 3, "class": "schema_violation", "message": "m"}])


def test_writers_produce_json_markdown_and_plots(tmp_path: Path) -> None:
    result = build_result(evaluation(tmp_path), ScoreOptions(bootstrap=20, target_precision=0.9),
                          {"task": None, "map": {}})
    written = write_outputs(result, tmp_path / "out")
    names = {p.name for p in written}
    assert {"result.json", "report.md", "safety_pr.png", "safety_confusion.png",
            "safety_reliability.png", "spam_pr.png"} <= names
    assert orjson.loads((tmp_path / "out" / "result.json").read_bytes()) == result
    report = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    assert "## safety" in report and "### Outcomes per label" in report
    assert "### Thresholds for precision >= 0.9" in report
    assert "Rejected lines: 3 (schema_violation)" in report


def test_compare_uses_the_tolerance_per_metric(tmp_path: Path) -> None:
    result: dict[str, Any] = build_result(evaluation(tmp_path), ScoreOptions(bootstrap=0),
                                          {"task": None, "map": {}})
    gate = Gate(tolerance={"accuracy": 0.1, "macro_f1": 0.0}, metrics=("accuracy", "macro_f1"))
    assert compare(result, result, gate) == []
    worse = orjson.loads(orjson.dumps(result))
    worse["tasks"]["spam"]["metrics"]["accuracy"] -= 0.05        # within 0.1
    worse["tasks"]["safety"]["metrics"]["macro_f1"] -= 0.001     # beyond 0.0
    regressions = compare(result, worse, gate)
    assert [(r.task, r.metric) for r in regressions] == [("safety", "macro_f1")]
    assert "safety: macro_f1" in regressions[0].describe()


def test_comparison_notes_name_other_data_new_tasks_and_versions(tmp_path: Path) -> None:
    new: dict[str, Any] = build_result(evaluation(tmp_path), ScoreOptions(bootstrap=0),
                                       {"task": None, "map": {}})
    old = orjson.loads(orjson.dumps(new))
    del old["tasks"]["spam"]
    old["tasks"]["safety"]["model"] = "safety-old"
    old["data"]["sha256"] = "1" * 64
    notes = comparison_notes(old, new)
    assert any("other data" in n for n in notes)
    assert any(n.startswith("spam: not in the baseline") for n in notes)
    assert "safety: model safety-old (baseline) vs safety-t" in notes
