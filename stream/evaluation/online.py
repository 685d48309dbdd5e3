"""`signals eval --from-topic signals.model_eval.v1`: summarise champion/challenger windows.

Reads the model-eval records the worker emitted (one per task and closed window) and combines
them per task and model pair: windows, items compared, overall agreement (weighted by items),
label distributions of both models, and the mean and worst PSI of each against its reference.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from stream.models.shadow import ROLES


def summarise(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One summary per (task, champion, challenger), in task order."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for record in records:
        models = record.get("models", {})
        key = (record["task"], models.get("champion", "?"), models.get("challenger", "?"))
        groups.setdefault(key, []).append(record)
    return [_summary(task, champion, challenger, windows)
            for (task, champion, challenger), windows in sorted(groups.items())]


def _summary(task: str, champion: str, challenger: str,
             windows: list[dict[str, Any]]) -> dict[str, Any]:
    count = sum(w["count"] for w in windows)
    agree = sum(w["count"] * (w["agreement_rate"] or 0.0) for w in windows)
    return {
        "task": task, "champion": champion, "challenger": challenger, "windows": len(windows),
        "count": count, "agreement_rate": agree / count if count else None,
        "first_window_ms": min(w["window"]["start_ms"] for w in windows),
        "last_window_ms": max(w["window"]["end_ms"] for w in windows),
        "label_distribution": {role: _pooled(windows, role) for role in ROLES},
        "psi": {role: _psi_stats(windows, role) for role in ROLES},
    }


def _pooled(windows: list[dict[str, Any]], role: str) -> dict[str, float]:
    totals: dict[str, float] = {}
    count = sum(w["count"] for w in windows)
    for w in windows:
        for label, share in w["label_distribution"].get(role, {}).items():
            totals[label] = totals.get(label, 0.0) + share * w["count"]
    return {label: n / count for label, n in sorted(totals.items())} if count else {}


def _psi_stats(windows: list[dict[str, Any]], role: str) -> dict[str, float] | None:
    values = [w["psi"][role]["labels"] for w in windows if w["psi"].get(role)]
    if not values:
        return None
    return {"mean_labels_psi": sum(values) / len(values), "max_labels_psi": max(values)}


def window_summary(summaries: list[dict[str, Any]]) -> list[str]:
    if not summaries:
        return ["no model-eval records (is a worker running with SIGNALS_CHALLENGERS?)"]
    lines = []
    for s in summaries:
        rate = "n/a" if s["agreement_rate"] is None else f"{s['agreement_rate']:.3f}"
        lines.append(f"{s['task']}: {s['champion']} vs {s['challenger']}: {s['count']} items in "
                     f"{s['windows']} windows, agreement {rate}")
        for role in ROLES:
            psi = s["psi"][role]
            drift = ("no reference" if psi is None else
                     f"PSI mean {psi['mean_labels_psi']:.4f}, max {psi['max_labels_psi']:.4f}")
            top = sorted(s["label_distribution"][role].items(), key=lambda kv: -kv[1])[:3]
            shares = ", ".join(f"{label} {share:.2f}" for label, share in top)
            lines.append(f"  {role:<10} {drift}; top labels: {shares}")
    return lines
