"""`signals produce` and `signals tail` on a real broker: a topic that does not exist yet, a
replication factor the cluster cannot give, and `--limit` counted per record."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pytest

from stream.connectors.kafka import admin_client
from stream.settings import Settings
from tests.integration.helpers import settings_env

pytestmark = pytest.mark.integration


@pytest.fixture
def tool_settings(kafka_bootstrap: str) -> Settings:
    run = uuid.uuid4().hex[:8]
    return Settings.load({}, {"bootstrap_servers": kafka_bootstrap}).replace(
        app_id=f"signals-tools-{run}", topic_prefix=f"tools-{run}.", partitions=3)


def signals(settings: Settings, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stream.cli", *argv], env=settings_env(settings),
                          capture_output=True, text=True, timeout=120, check=False)


def events_file(tmp_path: Path, count: int) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps({"content_id": f"c-{i}", "n": i}) + b"\n"
                              for i in range(count)))
    return path


def test_produce_creates_a_missing_topic_and_tail_stops_at_the_limit(
        tool_settings: Settings, tmp_path: Path) -> None:
    topic = tool_settings.topics.events
    produced = signals(tool_settings, "produce", str(events_file(tmp_path, 40)))
    assert produced.returncode == 0, produced.stderr
    assert f"created topic {topic} (3 partitions, replication 1)" in produced.stderr
    assert f"produced 40 records to {topic}" in produced.stdout
    admin = admin_client(tool_settings)
    try:
        assert len(admin.describe_topics([topic])[0]["partitions"]) == 3
    finally:
        admin.close()

    tailed = signals(tool_settings, "tail", topic, "--limit", "3", "--idle-timeout", "10")
    assert tailed.returncode == 0, tailed.stderr
    assert len(tailed.stdout.splitlines()) == 3


def test_a_replication_factor_the_cluster_cannot_give_is_one_line(
        tool_settings: Settings, tmp_path: Path) -> None:
    result = signals(tool_settings.replace(replication_factor=3), "produce",
                     str(events_file(tmp_path, 1)))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: cannot create topic {tool_settings.topics.events}: SIGNALS_REPLICATION_FACTOR=3 "
        "but the cluster has 1 broker(s); set SIGNALS_REPLICATION_FACTOR to at most 1"]
