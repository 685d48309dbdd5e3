"""Static group membership (``SIGNALS_GROUP_INSTANCE_ID``) on a real broker: a worker SIGKILLed
and restarted at once under the same instance id gets its partitions back without waiting for
its old member's session to expire. Measured and printed beside the same restart without an
instance id, never asserted as a time; what is asserted is that every event after the restart is
answered."""

from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream.connectors.kafka import ensure_topics, producer
from stream.settings import Settings
from tests.integration.helpers import collect, running_worker, values

pytestmark = pytest.mark.integration

PARTITIONS = 2
SESSION_TIMEOUT_S = 10.0


def track(tag: str, i: int) -> dict[str, Any]:
    return {"event_id": f"{tag}-{i}", "event_type": "content.published",
            "content_id": f"c-{tag}-{i}", "content_type": "track",
            "event_time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "market": "US",
            "title": f"Track {i}", "description": "Late-night jazz piano trio."}


def send(settings: Settings, tag: str, count: int) -> set[str]:
    client = producer(settings)
    for i in range(count):
        event = track(tag, i)
        client.send(settings.topics.events, key=event["content_id"].encode(),
                    value=orjson.dumps(event), partition=i % PARTITIONS)
    client.flush()
    client.close()
    return {f"{tag}-{i}" for i in range(count)}


def restart_seconds(settings: Settings, tmp_path: Path, name: str) -> float:
    """Run a worker until it answers a first batch, SIGKILL it, produce a second batch, start a
    new worker at once: seconds from that start until the whole second batch is answered."""
    ensure_topics(settings)
    first = send(settings, f"{name}-a", 6)
    signalled = lambda s: {v["event_id"] for v in values(s[settings.topics.signals])}  # noqa: E731
    with running_worker(settings, tmp_path / f"{name}-1.log") as worker:
        collect(settings, [settings.topics.signals], timeout_s=90, worker=worker,
                worker_log=tmp_path / f"{name}-1.log", until=lambda s: signalled(s) >= first)
        worker.send_signal(signal.SIGKILL)
        worker.wait(30)
    second = send(settings, f"{name}-b", 6)
    started = time.monotonic()
    with running_worker(settings, tmp_path / f"{name}-2.log") as worker:
        seen = collect(settings, [settings.topics.signals], timeout_s=90, worker=worker,
                       worker_log=tmp_path / f"{name}-2.log",
                       until=lambda s: signalled(s) >= second)
        elapsed = time.monotonic() - started
    assert signalled(seen) >= first | second
    return elapsed


def test_a_static_member_restarts_without_waiting_for_its_session(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    times = {}
    for name, instance in (("dynamic", ""), ("static", "worker-0")):
        run = uuid.uuid4().hex[:8]
        settings = Settings.load({}, {"bootstrap_servers": kafka_bootstrap}).replace(
            app_id=f"signals-static-{run}", topic_prefix=f"static-{run}.", partitions=PARTITIONS,
            worker_data_dir=tmp_path / name, session_timeout_s=SESSION_TIMEOUT_S,
            heartbeat_interval_s=1.0, group_instance_id=instance, include_embedding=False)
        times[name] = restart_seconds(settings, tmp_path, name)
    print(f"restart after SIGKILL to all answered (session timeout {SESSION_TIMEOUT_S:.0f} s): "
          f"without an instance id {times['dynamic']:.1f} s, with one {times['static']:.1f} s")
