"""The Grafana dashboard and the Prometheus alert rules refer only to metrics the worker exports,
and every alert is documented in README "Operating"."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from stream.paths import CHECKOUT as REPO_ROOT
from stream.worker.metrics import WorkerMetrics, exported_names

DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "content-signals.json"
ALERTS = REPO_ROOT / "deploy" / "prometheus" / "alerts.yml"
METRIC = re.compile(r"\bsignals_[a-z_]+\b")


@pytest.fixture(scope="module")
def exported() -> set[str]:
    return exported_names(WorkerMetrics.create().registry)


def dashboard_exprs() -> list[str]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]


def alert_rules() -> list[dict[str, Any]]:
    data: dict[str, Any] = yaml.safe_load(ALERTS.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def test_every_dashboard_metric_exists(exported: set[str]) -> None:
    used = {name for expr in dashboard_exprs() for name in METRIC.findall(expr)}
    assert used and used <= exported, used - exported


def test_every_alert_metric_exists_and_rules_are_complete(exported: set[str]) -> None:
    rules = alert_rules()
    assert {"SignalsConsumerLagHigh", "SignalsDeadLetterRateHigh", "SignalsNoOutput",
            "SignalsModelErrors"} <= {r["alert"] for r in rules}
    for rule in rules:
        names = set(METRIC.findall(rule["expr"]))
        assert names and names <= exported, (rule["alert"], names - exported)
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"] and "for" in rule


def test_the_dashboard_shows_every_metric_family(exported: set[str]) -> None:
    """Each exported family appears in some panel (a new metric needs a panel too)."""
    text = " ".join(dashboard_exprs())
    families = {re.sub(r"_(total|bucket|sum|count|created|info)$", "", n) for n in exported}
    missing = {f for f in families if f not in text}
    assert not missing, missing


def test_every_alert_and_metric_is_in_the_readme(exported: set[str]) -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    operating = readme[readme.index("## Operating"):]
    for rule in alert_rules():
        assert rule["alert"] in operating, rule["alert"]
    for family in {re.sub(r"_(bucket|sum|count|created)$", "", n) for n in exported}:
        assert family in operating, family
