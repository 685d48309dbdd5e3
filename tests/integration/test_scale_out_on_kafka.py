"""Three workers of one app id on a 6-partition input: every partition is served once, one worker
is stopped with SIGTERM and one killed with SIGKILL mid-stream, the survivor takes over, every
input offset ends as a signal or a dead letter (a repeat only as the identical record: same
event id, same source offset), and the windows the workers emitted (deduplicated by key; a
window emitted twice is byte-identical) equal an offline recount of the input
(`tests.integration.recount`, the crash test's layout and check). Takeover time is measured and
printed, never asserted."""

from __future__ import annotations

import signal
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from stream.connectors.kafka import ensure_topics
from stream.settings import Settings
from stream.worker.app import TABLE_NAME
from tests.integration.helpers import (
    all_served_once,
    collect,
    partitions_served,
    read_all,
    running_workers,
    stop,
    values,
    wait_until,
)
from tests.integration.recount import (
    check_window_stage,
    closers,
    recount,
    send,
    window_key,
    windowed_inputs,
)
from tests.integration.test_operating_on_kafka import account_for_every_offset

pytestmark = pytest.mark.integration

PARTITIONS = 6
CHUNK = 120   # events per feed: before the failures, during them, after them


def test_three_workers_share_six_partitions_and_survivors_take_over(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:8]
    settings = Settings.load({}, {"bootstrap_servers": kafka_bootstrap}).replace(
        app_id=f"signals-scale-{run}", topic_prefix=f"scale-{run}.", partitions=PARTITIONS,
        batch_max_size=16, batch_max_wait_s=0.2, model_threads=1, log_format="json",
        session_timeout_s=6.0, heartbeat_interval_s=1.0,   # 6 s: the broker's minimum
        window_grace_s=0, watermark_idle_s=600)   # no record late (the layout), no idle close
    topics = settings.topics
    ensure_topics(settings)
    made = windowed_inputs("scale", 3 * CHUNK, PARTITIONS)
    expected = recount(settings, made.valid)                  # the offline recount
    outputs = [topics.signals, topics.dlq, topics.windows, topics.enriched]
    changelog = f"{settings.app_id}-{TABLE_NAME}-changelog"
    recovered: dict[str, list[Any]] = defaultdict(list)
    produced = 0

    def feed(sends: list[tuple[int, bytes, bytes]]) -> None:
        nonlocal produced
        send(settings, topics.events, sends)
        produced += len(sends)

    def done(seen: dict[str, list[Any]]) -> bool:
        answered = {(v["source"]["partition"], v["source"]["offset"])
                    for v in values(seen[topics.signals] + seen[topics.dlq])}
        return len(answered) >= produced and \
            {window_key(w) for w in values(seen[topics.windows])} >= set(expected)

    with running_workers(settings, 3, tmp_path) as workers:
        took = wait_until(lambda: all_served_once(workers, topics.events, PARTITIONS), 180,
                          "3 workers to serve 6 partitions", workers, interval_s=0.5)
        served = partitions_served(workers, topics.events)
        print(f"3 workers ready in {took:.1f} s, partitions {served}")
        assert all(served), "a worker got no partition"
        feed(made.sends[:CHUNK])
        collect(settings, outputs[:2], timeout_s=60,
                until=lambda s: sum(map(len, s.values())) >= 60)

        terminated, killed, survivor = workers
        feed(made.sends[CHUNK:2 * CHUNK])
        assert stop(terminated) == 0, terminated.log_tail()
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        kill_at = time.monotonic()
        read_all(settings, changelog, recovered)   # the window state the failures left behind
        feed(made.sends[2 * CHUNK:])
        takeover = wait_until(lambda: all_served_once(workers, topics.events, PARTITIONS), 120,
                              "the survivor to serve every partition", [survivor],
                              interval_s=0.25)
        print(f"takeover after SIGKILL (session timeout 6 s): {takeover:.1f} s; "
              f"{time.monotonic() - kill_at:.1f} s to all partitions on the survivor")
        feed(closers(made))
        seen = collect(settings, outputs, timeout_s=120, worker=survivor,
                       worker_log=survivor.log_path, until=done)

    records = values(seen[topics.signals]) + values(seen[topics.dlq])
    by_source: dict[tuple[int, int], set[str | None]] = defaultdict(set)
    for record in records:
        where = (record["source"]["partition"], record["source"]["offset"])
        by_source[where].add(record.get("event_id"))
    assert all(len(ids) == 1 for ids in by_source.values()), "a repeat differs from the first"
    repeats = len(records) - len(by_source)
    print(f"{produced} events, {len(by_source)} offsets out, {repeats} repeated identically")
    read_all(settings, topics.enriched, seen)
    check = check_window_stage(settings, made.valid, seen[topics.windows],
                               seen[topics.enriched], recovered[changelog],
                               "a SIGTERM, a SIGKILL and two rebalances")
    print(f"{len(check.counts)} windows emitted ({len(expected)} expected), "
          f"{check.copies} emitted twice")
    account_for_every_offset(settings, list(by_source))
    assert check.counts == expected
