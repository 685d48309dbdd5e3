"""The worker's metrics module, readiness rules and operating settings, without a broker."""

from __future__ import annotations

import socket
from typing import Any

import faust
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from stream.cli import main
from stream.core.pipeline import Pipeline, process_batch
from stream.core.records import Position, RawMessage
from stream.errors import ConfigError
from stream.settings import Settings
from stream.worker.app import faust_options
from stream.worker.health import Health
from stream.worker.metrics import WorkerMetrics, exported_names
from stream.worker.server import bind_socket

TOPIC = "content.events.v1"


def samples(metrics: WorkerMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the rendered text format, parsed back by prometheus_client's parser."""
    text = metrics.render().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def messages(values: list[bytes], timestamp_ms: int = 1_000) -> list[RawMessage]:
    return [RawMessage(value=v, key=None, position=Position(TOPIC, i % 2, i),
                       timestamp_ms=timestamp_ms) for i, v in enumerate(values)]


def show(i: int) -> bytes:
    return orjson.dumps({"event_id": f"e-{i}", "event_type": "content.published",
                         "content_id": f"c-{i}", "content_type": "show",
                         "event_time": "2026-01-05T10:00:00Z", "title": f"Show {i}"})


def test_each_app_gets_its_own_registry() -> None:
    first, second = WorkerMetrics.create(), WorkerMetrics.create()
    first.signals.inc(3)
    assert samples(first)[("signals_signals_total", ())] == 3
    assert samples(second)[("signals_signals_total", ())] == 0


def test_a_batch_is_counted_from_its_output(pipeline: Pipeline) -> None:
    batch = messages([show(0), b"not json", show(2), show(3)])
    output = process_batch(pipeline, batch)
    metrics = WorkerMetrics.create()
    metrics.observe_batch(batch, output, batch_seconds=0.25, sent_at_s=3.0)
    got = samples(metrics)
    assert got[("signals_events_total", (("partition", "0"), ("topic", TOPIC)))] == 2
    assert got[("signals_events_total", (("partition", "1"), ("topic", TOPIC)))] == 2
    assert got[("signals_signals_total", ())] == 3
    assert got[("signals_dead_letters_total", (("error_class", "invalid_json"),))] == 1
    assert got[("signals_batch_size_sum", ())] == 4
    assert got[("signals_batch_seconds_sum", ())] == 0.25
    assert got[("signals_end_to_end_seconds_sum", ())] == pytest.approx(4 * 2.0)
    encoder = pipeline.enricher.versions["embedding"]
    assert got[("signals_model_seconds_count", (("task", "embedding"),
                                                ("version", encoder)))] == 1
    topics = sum(v for (name, labels), v in got.items()
                 if name == "signals_predictions_total" and ("task", "topic") in labels)
    assert topics == 3


def test_windows_and_late_records() -> None:
    metrics = WorkerMetrics.create()
    closed = [{"window": {"name": "tumbling_60s"}}, {"window": {"name": "tumbling_60s"}}]
    metrics.observe_windows("aggregate", closed, late_records=2)
    got = samples(metrics)
    assert got[("signals_windows_closed_total", (("agent", "aggregate"),
                                                 ("window", "tumbling_60s")))] == 2
    assert got[("signals_late_records_total", ())] == 2


def test_the_assignment_gauges_follow_the_latest_assignment() -> None:
    metrics = WorkerMetrics.create()
    metrics.set_assignment({(TOPIC, 0): 5, (TOPIC, 1): None, ("other", 3): 0})
    metrics.set_assignment({(TOPIC, 1): 7})             # partition 0 and "other" were revoked
    got = samples(metrics)
    lags = {labels: v for (name, labels), v in got.items() if name == "signals_consumer_lag"}
    assert lags == {(("partition", "1"), ("topic", TOPIC)): 7}
    assigned = {labels: v for (name, labels), v in got.items()
                if name == "signals_assigned_partitions"}
    assert assigned == {(("topic", TOPIC),): 1}


def test_build_info_names_the_version_commit_and_models() -> None:
    metrics = WorkerMetrics.create()
    metrics.set_build_info("0.1.0", None, {"embedding": "enc-v1", "topic": "topic-v2"})
    [(_, labels)] = [key for key in samples(metrics) if key[0] == "signals_build_info"]
    assert dict(labels) == {"version": "0.1.0", "commit": "unknown",
                            "model_embedding": "enc-v1", "model_topic": "topic-v2"}


def test_exported_names_cover_series_that_have_no_value_yet() -> None:
    names = exported_names(WorkerMetrics.create().registry)
    assert {"signals_consumer_lag", "signals_dead_letters_total", "signals_batch_seconds_bucket",
            "signals_build_info", "signals_end_to_end_seconds_count"} <= names


@pytest.fixture
def app() -> Any:
    return faust.App("readiness-test", broker="kafka://127.0.0.1:1", autodiscover=False)


def test_ready_only_with_models_an_assignment_and_no_rebalance(app: Any) -> None:
    health = Health()
    assert health.readiness(app)[0] is False
    health.models_loaded = True
    ready, checks = health.readiness(app)
    assert not ready and checks["partitions_assigned"] is False
    health.assignment_seen = True
    assert health.readiness(app)[0] is True
    app.rebalancing = True                               # what Faust sets on rebalance start
    ready, checks = health.readiness(app)
    assert not ready and checks == {"models_loaded": True, "partitions_assigned": True,
                                    "not_rebalancing": False, "recovery_finished": True}
    app.rebalancing, app.in_recovery = False, True
    assert health.readiness(app)[0] is False


def test_session_timeout_and_heartbeat_reach_faust() -> None:
    settings = Settings.load({"SIGNALS_SESSION_TIMEOUT_S": "6",
                              "SIGNALS_HEARTBEAT_INTERVAL_S": "2"})
    options = faust_options(settings)
    assert (options["broker_session_timeout"], options["broker_heartbeat_interval"]) == (6, 2)
    defaults = Settings()
    assert (defaults.session_timeout_s, defaults.heartbeat_interval_s) == (10.0, 3.0)
    assert defaults.metrics_port == 9180


@pytest.mark.parametrize(("env", "fragment"), [
    ({"SIGNALS_METRICS_PORT": "70000"}, "SIGNALS_METRICS_PORT=70000; use a TCP port 1-65535, or 0"),
    ({"SIGNALS_METRICS_PORT": "-1"}, "SIGNALS_METRICS_PORT=-1"),
    ({"SIGNALS_METRICS_PORT": "http"}, "SIGNALS_METRICS_PORT='http' is not a number"),
    ({"SIGNALS_HEARTBEAT_INTERVAL_S": "12"}, "SIGNALS_HEARTBEAT_INTERVAL_S=12.0 must be below"),
    ({"SIGNALS_SESSION_TIMEOUT_S": "0"}, "SIGNALS_SESSION_TIMEOUT_S=0.0; it must be > 0"),
])
def test_bad_operating_settings_are_one_line(env: dict[str, str], fragment: str,
                                              capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.load(env)
    assert fragment in str(info.value)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["worker"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


def test_a_metrics_port_in_use_is_a_config_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = Settings().replace(metrics_host="127.0.0.1", metrics_port=port)
        with pytest.raises(ConfigError, match=f"metrics_port={port} on 127.0.0.1: "):
            bind_socket(settings)
    assert bind_socket(Settings().replace(metrics_port=0)) is None
