"""The Markdown report of an evaluation result (``report.md``), and the console summary."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

CONFUSION_TABLE_UP_TO = 12
HEADLINE = ("accuracy", "macro_f1", "micro_f1", "macro_precision", "macro_recall")


def result_summary(result: dict[str, Any]) -> list[str]:
    """One line per task for the terminal: n, the headline metrics with their intervals."""
    lines = []
    for task, scored in result["tasks"].items():
        parts = [f"{task:<10} {scored['model']}  n={scored['n']}"]
        for metric in ("accuracy", "macro_f1", "micro_f1"):
            value = scored["metrics"][metric]
            ci = scored["ci95"].get(metric)
            interval = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""
            parts.append(f"{metric} {value:.4f}{interval}")
        parts.append(f"ECE {scored['calibration']['ece']:.3f}")
        lines.append("  ".join(parts))
    if "near_duplicate" in result:
        lines.append(near_duplicate_line(result["near_duplicate"]))
    return lines


def near_duplicate_line(report: dict[str, Any]) -> str:
    held = report["held_out"]
    return (f"near_duplicate {report['encoder']} at {report['threshold']:.2f}  "
            f"n={report['pairs']['held_out']} held-out pairs  precision {held['precision']:.4f}"
            f"  recall {held['recall']:.4f}  false flags {held['false_flag_rate']:.4f}")


def markdown(result: dict[str, Any]) -> str:
    data = result["data"]
    out = [f"# Evaluation of `{data['path']}`", "",
           f"{data['records']} records (sha256 `{data['sha256'][:12]}`), "
           f"{data['rejected']} rejected by validation. "
           f"Bootstrap: {result['options']['bootstrap']} resamples, seed "
           f"{result['options']['seed']}.", "",
           _table(["task", "model"], [[t, v] for t, v in result["models"].items()]), ""]
    out += [f"* {note}" for note in result["notes"]]
    if data["rejections"]:
        out += ["", "Rejected lines: " + ", ".join(f"{r['line']} ({r['class']})"
                                                   for r in data["rejections"])]
    for task, scored in result["tasks"].items():
        out += ["", *_task_section(task, scored)]
    if "near_duplicate" in result:
        report = result["near_duplicate"]
        out += ["", "## near_duplicate", "", near_duplicate_line(report), "",
                _table(["edit", "pairs", "recall (flagged for same-label)", "median cosine"],
                       [[edit, row["pairs"], row.get("recall", row.get("flagged_rate")),
                         row["median_cosine"]]
                        for edit, row in report["held_out_by_edit"].items()])]
    return "\n".join(out) + "\n"


def _task_section(task: str, scored: dict[str, Any]) -> list[str]:
    kind = "multi-label, scored per label on `flagged`" if scored["multi_label"] else "single-label"
    rows = [[name, _f(scored["metrics"][name]), _ci(scored["ci95"].get(name))]
            for name in HEADLINE]
    rows.append(["ECE", _f(scored["calibration"]["ece"]), ""])
    out = [f"## {task} — `{scored['model']}` ({kind}), n = {scored['n']}", "",
           _table(["metric", "value", "95 % CI"], rows), "",
           f"![precision-recall]({task}_pr.png) ![confusion]({task}_confusion.png) "
           f"![reliability]({task}_reliability.png)", "", "### Per label", "",
           _per_label_table(scored), ""]
    out += _confusion_section(task, scored)
    out += _operating_section(scored)
    for name, groups in scored["slices"].items():
        out += ["", f"### Slice: {name}", "", _table(
            ["value", "n", "accuracy", "macro-F1", "micro-F1"],
            [[key, g["n"], _f(g["accuracy"]), _f(g["macro_f1"]), _f(g["micro_f1"])]
             for key, g in groups.items()])]
    return out


def _per_label_table(scored: dict[str, Any]) -> str:
    rows = [[label, _f(r["precision"]), _f(r["recall"]), _f(r["f1"]), r["support"],
             r["predicted"], _f(r.get("average_precision")), _f(r.get("threshold"))]
            for label, r in scored["per_label"].items()]
    return _table(["label", "precision", "recall", "F1", "support", "predicted", "AP",
                   "threshold"], rows)


def _confusion_section(task: str, scored: dict[str, Any]) -> list[str]:
    confusion = scored["confusion"]
    labels = confusion["labels"]
    if scored["multi_label"]:
        rows = [[lb, *(confusion["per_label"][lb][c] for c in ("tp", "fp", "fn", "tn"))]
                for lb in labels]
        return ["### Outcomes per label", "", _table(["label", "TP", "FP", "FN", "TN"], rows)]
    if len(labels) > CONFUSION_TABLE_UP_TO:
        return ["### Confusion matrix", "", f"{len(labels)} labels: see `{task}_confusion.png` "
                "and `result.json` (`confusion.matrix`, rows = true label)."]
    rows = [[f"**{lb}**", *row] for lb, row in zip(labels, confusion["matrix"], strict=True)]
    return ["### Confusion matrix (rows: true, columns: predicted)", "",
            _table(["", *labels], rows)]


def _operating_section(scored: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for op in scored["operating_points"]:
        rows = [["(all pooled)", *_point(op["micro"])]]
        rows += [[label, *_point(p)] for label, p in op["labels"].items()]
        out += ["", f"### Thresholds for {op['target']} >= {op['value']}", "",
                _table(["label", "threshold", "precision", "recall"], rows)]
    if scored["pr"]["score_source"] == "top1":
        out += ["", "_Curves use the top label's score only (the model reports no per-label "
                "scores): recall cannot exceed the top-1 recall._"]
    return out


def _point(point: dict[str, float] | None) -> list[str]:
    if point is None:
        return ["not reachable", "", ""]
    return [_f(point["threshold"]), _f(point["precision"]), _f(point["recall"])]


def _f(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _ci(ci: Sequence[float] | None) -> str:
    return "" if not ci else f"{ci[0]:.4f} – {ci[1]:.4f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)
