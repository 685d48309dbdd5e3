"""Writers of an evaluation result: ``result.json`` for machines, ``report.md`` for people, and
per task ``<task>_confusion.png``, ``<task>_pr.png``, ``<task>_reliability.png``.

Everything here reads the result dict of `stream.evaluation.scoring.build_result`; nothing is
computed again. The Markdown tables are in `stream.evaluation.markdown`. Figures are plain
matplotlib
`Figure` objects rendered by the Agg canvas: no pyplot, no display, no global figure state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from stream.errors import InputFileError
from stream.evaluation.markdown import markdown

MAX_PR_LABELS = 10
ANNOTATE_UP_TO = 20


def write_outputs(result: dict[str, Any], out: Path) -> list[Path]:
    """Write the JSON, the Markdown and the plots into `out` (created); return the paths."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputFileError(f"cannot create output folder {out}: {exc.strerror}") from exc
    written = [out / "result.json", out / "report.md"]
    written[0].write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    written[1].write_text(markdown(result), encoding="utf-8")
    for task, scored in result["tasks"].items():
        for kind, draw in (("confusion", confusion_figure), ("pr", pr_figure),
                           ("reliability", reliability_figure)):
            path = out / f"{task}_{kind}.png"
            figure = draw(task, scored)
            figure.savefig(path, dpi=110, bbox_inches="tight")
            written.append(path)
    return written


def _title(task: str, scored: dict[str, Any], what: str) -> str:
    return f"{task} ({scored['model']}): {what}, n={scored['n']}"


def confusion_figure(task: str, scored: dict[str, Any]) -> Figure:
    confusion = scored["confusion"]
    labels = confusion["labels"]
    if scored["multi_label"]:
        columns = ["tp", "fp", "fn", "tn"]
        counts = np.array([[confusion["per_label"][lb][c] for c in columns] for lb in labels])
        figure = Figure(figsize=(6, 1.2 + 0.45 * len(labels)))
        ax = figure.subplots()
        shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        _heatmap(ax, shares, counts, labels, [c.upper() for c in columns], annotate=True)
        ax.set_title(_title(task, scored, "per-label outcomes (colour: share of records)"))
        return figure
    counts = np.array(confusion["matrix"])
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = max(5.0, 0.3 * len(labels) + 3)
    figure = Figure(figsize=(size + 1, size))
    ax = figure.subplots()
    _heatmap(ax, shares, counts, labels, labels,
             annotate=True, diagonal=len(labels) <= ANNOTATE_UP_TO)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(_title(task, scored, "confusion (colour: share of the true row)"))
    return figure


def _heatmap(ax: Axes, shares: np.ndarray, counts: np.ndarray, rows: list[str],
             columns: list[str], *, annotate: bool, diagonal: bool = True) -> None:
    """Colour by share, write the non-zero counts (a large matrix: only the errors)."""
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    figure = ax.get_figure()
    if figure is not None:
        figure.colorbar(image, ax=ax, fraction=0.04)
    small = 7 if max(len(rows), len(columns)) > 30 else 9
    ax.set_xticks(range(len(columns)), columns, rotation=90, fontsize=small)
    ax.set_yticks(range(len(rows)), rows, fontsize=small)
    if annotate:
        for (i, j), value in np.ndenumerate(counts):
            if value and (diagonal or i != j):
                colour = "white" if shares[i, j] > 0.6 else "black"
                ax.text(j, i, str(value), ha="center", va="center", fontsize=small, color=colour)


def pr_figure(task: str, scored: dict[str, Any]) -> Figure:
    pr = scored["pr"]
    figure = Figure(figsize=(7, 6))
    ax = figure.subplots()
    support = {label: row["support"] for label, row in scored["per_label"].items()}
    shown = sorted(pr["curves"], key=lambda label: -support.get(label, 0))[:MAX_PR_LABELS]
    for label in shown:
        curve = pr["curves"][label]
        ax.plot(*_steps(curve), drawstyle="steps-pre", linewidth=1.3,
                label=f"{label} (AP {curve['average_precision']:.2f}, n={curve['positives']})")
    micro = pr["micro"]
    ax.plot(*_steps(micro), "k--", drawstyle="steps-pre", linewidth=1.5,
            label=f"all labels pooled (AP {micro['average_precision']:.2f})")
    for op in scored["operating_points"]:
        if op["micro"] is not None:
            ax.plot(op["micro"]["recall"], op["micro"]["precision"], "ko", markersize=7)
            ax.annotate(f"{op['target']} >= {op['value']}: t={op['micro']['threshold']:.3f}",
                        (op["micro"]["recall"], op["micro"]["precision"]),
                        textcoords="offset points", xytext=(-10, -15), ha="right", fontsize=8)
    ax.set(xlim=(0, 1.02), ylim=(0, 1.02), xlabel="recall", ylabel="precision")
    ax.grid(alpha=0.3)
    more = len(pr["curves"]) - len(shown)
    what = "precision-recall" + (f" ({MAX_PR_LABELS} largest labels; {more} more in "
                                 "result.json)" if more > 0 else "")
    if pr["score_source"] == "top1":
        what += "\nscores: top label only, so recall ends at top-1 recall"
    ax.set_title(_title(task, scored, what), fontsize=10)
    ax.legend(loc="lower left", fontsize=7)
    return figure


def _steps(curve: dict[str, Any]) -> tuple[list[float], list[float]]:
    """Recall and precision from recall 0, drawn as the step function average precision sums:
    each recall step up to a point has that point's precision."""
    precision = curve["precision"]
    return [0.0, *curve["recall"]], [precision[0] if precision else 1.0, *precision]


def reliability_figure(task: str, scored: dict[str, Any]) -> Figure:
    cal = scored["calibration"]
    bins = cal["bins"]
    centres = np.array([(b["lower"] + b["upper"]) / 2 for b in bins])
    width = bins[0]["upper"] - bins[0]["lower"]
    filled = np.array([b["count"] > 0 for b in bins])
    figure = Figure(figsize=(6, 7))
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    accuracy = np.array([b["accuracy"] for b in bins])
    confidence = np.array([b["confidence"] for b in bins])
    top.bar(centres[filled], accuracy[filled], width=width * 0.9, color="tab:blue",
            edgecolor="black", label="observed accuracy")
    top.plot(confidence[filled], confidence[filled], "r_", markersize=14, mew=2,
             label="mean confidence in the bin")
    top.plot([0, 1], [0, 1], "k:", label="perfect calibration")
    top.set(ylim=(0, 1.02), ylabel="fraction correct" if not scored["multi_label"]
            else "fraction truly labelled")
    top.legend(loc="upper left", fontsize=8)
    what = ("confidence of the top label" if not scored["multi_label"]
            else "every per-label probability")
    top.set_title(_title(task, scored, f"reliability, ECE {cal['ece']:.3f}\n({what})"),
                  fontsize=10)
    bottom.bar(centres, [b["count"] for b in bins], width=width * 0.9, color="grey")
    bottom.set(xlim=(0, 1), xlabel="confidence", ylabel="records")
    counts = [b["count"] for b in bins if b["count"]]
    if counts and max(counts) > 50 * min(counts):
        bottom.set_yscale("log")
    return figure
