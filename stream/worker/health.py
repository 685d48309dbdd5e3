"""Liveness and readiness of a worker, from Faust's own rebalance and recovery signals.

* **Live**: the event loop answers (`stream.worker.server` serves ``/healthz`` from the loop, so a
  blocked loop fails the probe).
* **Ready**: the models are loaded and verified, a partition assignment has arrived, and no
  rebalance or table recovery is in progress. Faust sets ``app.rebalancing`` when the consumer's
  rebalance listener is first called (``on_rebalance_start``) and clears it in
  ``on_rebalance_end``, after table recovery finished and the streams resumed ("Worker ready" in
  its log); ``app.in_recovery`` covers the recovery in between. An assignment with no partitions
  (more workers than partitions) still counts as ready: that worker is healthy and idle, and a
  never-ready pod would block a rolling update.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from stream.worker.metrics import TopicPartition, WorkerMetrics

log = structlog.get_logger("stream.worker.health")
REQUEST_TIMEOUT_S = 1.0  # a scrape must answer well within Prometheus' 10 s timeout


@dataclass
class Health:
    """Readiness inputs that Faust does not keep itself; the rest is read off the app."""

    models_loaded: bool = False
    assignment_seen: bool = False
    assigned: frozenset[TopicPartition] = field(default_factory=frozenset)

    def readiness(self, app: Any) -> tuple[bool, dict[str, bool]]:
        checks = {"models_loaded": self.models_loaded,
                  "partitions_assigned": self.assignment_seen,
                  "not_rebalancing": not bool(getattr(app, "rebalancing", False)),
                  "recovery_finished": not bool(getattr(app, "in_recovery", False))}
        return all(checks.values()), checks


def connect(app: Any, health: Health, metrics: WorkerMetrics) -> None:
    """Follow the app's assignments: remember them, count rebalances, log what changed."""

    async def on_assigned(sender: Any, assigned: Collection[Any], **_: Any) -> None:
        health.assignment_seen = True
        health.assigned = frozenset((tp.topic, tp.partition) for tp in assigned)
        metrics.rebalances.inc()
        log.info("partitions_assigned", partitions=sorted(
            f"{topic}:{partition}" for topic, partition in health.assigned))

    async def on_revoked(sender: Any, revoked: Collection[Any], **_: Any) -> None:
        log.info("partitions_revoked", partitions=sorted(
            f"{tp.topic}:{tp.partition}" for tp in revoked))

    app.on_partitions_assigned.connect(on_assigned)
    app.on_partitions_revoked.connect(on_revoked)


async def consumer_lags(app: Any, topics: Collection[str]) -> Mapping[TopicPartition, int | None]:
    """Highwater minus position for each assigned partition of `topics` (changelogs are left
    out); None where the consumer does not know one yet (no fetch since the assignment)."""
    try:
        consumer = app.consumer
        assignment = [tp for tp in consumer.assignment() if tp.topic in topics]
    except Exception:   # not started yet, or stopping: no assignment to report
        return {}
    highwaters = await _highwaters(consumer, assignment)
    lags: dict[TopicPartition, int | None] = {}
    for tp in assignment:
        lags[(tp.topic, tp.partition)] = await _lag(consumer, tp, highwaters.get(tp))
    return lags


async def _highwaters(consumer: Any, tps: list[Any]) -> dict[Any, int | None]:
    """The highwater of each partition from the last fetch; one ListOffsets request for those
    not fetched from yet (an idle partition has a lag too: 0)."""
    known: dict[Any, int | None] = {}
    for tp in tps:
        try:
            known[tp] = consumer.highwater(tp)
        except Exception:
            known[tp] = None
    missing = [tp for tp, highwater in known.items() if highwater is None]
    # the broker is slow or we are rebalancing: those stay unknown
    with contextlib.suppress(Exception):
        if missing:
            known.update(await asyncio.wait_for(consumer.highwaters(*missing), REQUEST_TIMEOUT_S))
    return known


async def _lag(consumer: Any, tp: Any, highwater: int | None) -> int | None:
    if highwater is None:
        return None
    try:
        position = await asyncio.wait_for(consumer.position(tp), REQUEST_TIMEOUT_S)
    except Exception:   # revoked meanwhile, or the consumer is rebalancing
        return None
    return None if position is None else max(0, int(highwater) - int(position))
