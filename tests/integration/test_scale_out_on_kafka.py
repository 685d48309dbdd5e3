"""Three workers of one app id on a 6-partition input: every partition is served once, one worker
is stopped with SIGTERM and one killed with SIGKILL mid-stream, the survivor takes over, and every
input offset ends as a signal or a dead letter (a repeat only as the identical record: same
event id, same source offset). Takeover time is measured and printed, never asserted."""

from __future__ import annotations

import signal
import time
import uuid
from collections import defaultdict
from pathlib import Path

import orjson
import pytest

from stream.connectors.kafka import ensure_topics, produce
from stream.settings import Settings
from tests.integration.helpers import (
    all_served_once,
    collect,
    partitions_served,
    running_workers,
    stop,
    values,
    wait_until,
)
from tests.integration.test_operating_on_kafka import account_for_every_offset

pytestmark = pytest.mark.integration

PARTITIONS = 6


def events(tag: str, count: int) -> list[tuple[bytes, bytes]]:
    return [(f"c-{tag}-{i}".encode(), orjson.dumps({
        "event_id": f"{tag}-{i}", "event_type": "content.published", "content_id": f"c-{tag}-{i}",
        "content_type": "track", "event_time": "2026-01-05T10:00:00Z", "market": "US",
        "title": f"Track {i} of batch {tag}", "description": "Late-night jazz piano trio."}))
        for i in range(count)]


def test_three_workers_share_six_partitions_and_survivors_take_over(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:8]
    settings = Settings.load({}, {"bootstrap_servers": kafka_bootstrap}).replace(
        app_id=f"signals-scale-{run}", topic_prefix=f"scale-{run}.", partitions=PARTITIONS,
        batch_max_size=16, batch_max_wait_s=0.2, model_threads=1, log_format="json",
        session_timeout_s=6.0, heartbeat_interval_s=1.0)   # 6 s: the broker's minimum
    topics = settings.topics
    ensure_topics(settings)
    outputs = [topics.signals, topics.dlq]
    produced = 0

    def feed(tag: str, count: int) -> None:
        nonlocal produced
        produce(settings, topics.events, events(tag, count))
        produced += count

    with running_workers(settings, 3, tmp_path) as workers:
        took = wait_until(lambda: all_served_once(workers, topics.events, PARTITIONS), 180,
                          "3 workers to serve 6 partitions", workers, interval_s=0.5)
        served = partitions_served(workers, topics.events)
        print(f"3 workers ready in {took:.1f} s, partitions {served}")
        assert all(served), "a worker got no partition"
        feed("a", 120)
        collect(settings, outputs, timeout_s=60, until=lambda s: sum(map(len, s.values())) >= 60)

        terminated, killed, survivor = workers
        feed("b", 120)
        assert stop(terminated) == 0, terminated.log_tail()
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        kill_at = time.monotonic()
        feed("c", 120)
        takeover = wait_until(lambda: all_served_once(workers, topics.events, PARTITIONS), 120,
                              "the survivor to serve every partition", [survivor],
                              interval_s=0.25)
        print(f"takeover after SIGKILL (session timeout 6 s): {takeover:.1f} s; "
              f"{time.monotonic() - kill_at:.1f} s to all partitions on the survivor")
        seen = collect(settings, outputs, timeout_s=120, worker=survivor,
                       worker_log=survivor.log_path,
                       until=lambda s: len({(v["source"]["partition"], v["source"]["offset"])
                                            for v in values(s[topics.signals] + s[topics.dlq])})
                       >= produced)

    records = values(seen[topics.signals]) + values(seen[topics.dlq])
    by_source: dict[tuple[int, int], set[str | None]] = defaultdict(set)
    for record in records:
        where = (record["source"]["partition"], record["source"]["offset"])
        by_source[where].add(record.get("event_id"))
    assert all(len(ids) == 1 for ids in by_source.values()), "a repeat differs from the first"
    repeats = len(records) - len(by_source)
    print(f"{produced} events, {len(by_source)} offsets out, {repeats} repeated identically")
    account_for_every_offset(settings, list(by_source))
