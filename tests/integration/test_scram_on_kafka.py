"""The project's SCRAM broker (`signals broker start --auth scram`): the worker and the tools
connect with the printed credentials, and every wrong setting is one line and a non-zero exit."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pytest

from stream.connectors.broker import LocalBroker
from stream.settings import Settings
from tests.integration.helpers import collect, running_worker, settings_env

pytestmark = pytest.mark.integration

EVENT_TIME = "2026-01-05T10:00:{:02d}Z"


def scram_settings(broker: LocalBroker, protocol: str = "SASL_SSL") -> Settings:
    """What `signals broker start --auth scram` printed, as Settings."""
    printed = dict(line.removeprefix("export ").split("=", 1)
                   for line in broker.client_settings() if line.startswith("export "))
    env = {**printed, "SIGNALS_SECURITY_PROTOCOL": protocol}
    if protocol == "SASL_PLAINTEXT":
        env["SIGNALS_BOOTSTRAP_SERVERS"] = broker.bootstrap
    return Settings.load(env)


@pytest.fixture
def run_settings(scram_broker: LocalBroker, tmp_path: Path) -> Settings:
    run = uuid.uuid4().hex[:8]
    return scram_settings(scram_broker).replace(
        app_id=f"scram-{run}", topic_prefix=f"scram-{run}.", partitions=1, model_threads=1,
        worker_data_dir=tmp_path / "worker", batch_max_wait_s=0.2, connect_timeout_s=5)


def signals(settings: Settings, *argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stream.cli", *argv], env=settings_env(settings),
                          input=stdin, capture_output=True, text=True, timeout=180, check=False)


def event(i: int) -> bytes:
    return orjson.dumps({"event_id": f"scram-{i}", "event_type": "comment.created",
                         "content_id": f"c-{i}", "content_type": "comment",
                         "event_time": EVENT_TIME.format(i), "text": f"Great episode {i}!"})


def test_the_printed_settings_work_for_worker_produce_tail_replay_and_eval(
        run_settings: Settings, scram_broker: LocalBroker, tmp_path: Path) -> None:
    topics = run_settings.topics
    lines = "".join(event(i).decode() + "\n" for i in range(3))
    produced = signals(run_settings, "produce", "-", stdin=lines)
    assert produced.returncode == 0, produced.stderr
    assert f"produced 3 records to {topics.events}" in produced.stdout

    log = tmp_path / "worker.log"
    with running_worker(run_settings, log) as worker:
        seen = collect(run_settings, [topics.signals], timeout_s=150, worker=worker,
                       worker_log=log, until=lambda s: len(s[topics.signals]) >= 3)
    assert sorted(orjson.loads(r.value)["event_id"] for r in seen[topics.signals]) == [
        "scram-0", "scram-1", "scram-2"]

    plain = scram_settings(scram_broker, "SASL_PLAINTEXT").replace(
        topic_prefix=run_settings.topic_prefix)
    tailed = signals(plain, "tail", topics.signals, "--limit", "2", "--idle-timeout", "10")
    assert tailed.returncode == 0, tailed.stderr
    assert len(tailed.stdout.splitlines()) == 2

    replayed = signals(run_settings, "replay", "--topic", topics.events, "--no-progress",
                       "--output", str(tmp_path / "replay.jsonl"))
    assert replayed.returncode == 0, replayed.stderr
    assert len((tmp_path / "replay.jsonl").read_text().splitlines()) == 3

    window = {"task": "spam", "window": {"start_ms": 0, "end_ms": 60_000}, "count": 10,
              "models": {"champion": "spam-v1", "challenger": "spam-v2"}, "agreement_rate": 0.5,
              "label_distribution": {"champion": {"ham": 1.0}, "challenger": {"ham": 1.0}},
              "psi": {"champion": None, "challenger": None}}
    sent = signals(run_settings, "produce", "-", "--topic", topics.model_eval,
                   stdin=orjson.dumps(window).decode() + "\n")
    assert sent.returncode == 0, sent.stderr
    evaluated = signals(run_settings, "eval", "--from-topic", topics.model_eval,
                        "--idle-timeout", "5")
    assert evaluated.returncode == 0, evaluated.stderr
    assert "spam: spam-v1 vs spam-v2: 10 items in 1 windows" in evaluated.stdout


WRONG = {
    "wrong password": ({"sasl_password": "not-the-password"}, "authentication failed"),
    "unknown user": ({"sasl_username": "nobody"}, "authentication failed"),
    "wrong mechanism": ({"sasl_mechanism": "SCRAM-SHA-256"}, "authentication failed"),
    "plaintext at the sasl port": ({"security_protocol": "PLAINTEXT"}, "authentication failed"),
    "no ca file": ({"ssl_cafile": ""}, "TLS handshake with"),
    "missing ca file": ({"ssl_cafile": "/nonexistent/ca.pem"},
                        "SIGNALS_SSL_CAFILE=/nonexistent/ca.pem: no such file"),
}


@pytest.mark.parametrize("case", sorted(WRONG))
@pytest.mark.parametrize("command", ["produce", "tail", "worker"])
def test_a_wrong_setting_is_one_line_on_stderr(run_settings: Settings, scram_broker: LocalBroker,
                                               case: str, command: str) -> None:
    changes, expected = WRONG[case]
    settings = run_settings.replace(**changes)
    if changes.get("security_protocol") == "PLAINTEXT":
        settings = settings.replace(bootstrap_servers=scram_broker.bootstrap)
    argv = {"produce": ["produce", "-"], "tail": ["tail", "any.topic"], "worker": ["worker"]}
    result = signals(settings, *argv[command], stdin=event(0).decode())
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and expected in lines[0]
    if expected == "TLS handshake with":
        assert "SIGNALS_SSL_CAFILE" in lines[0]
