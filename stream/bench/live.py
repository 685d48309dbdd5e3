"""`signals bench --live`: the real worker draining a backlog on a real broker, against its own
`process_batch` on the same events in the same run (issue #11: live ≥ 0.9 × process_batch).

A fresh single-node Kafka (KRaft, from ``deploy/kafka/lib``) on free ports in a temporary folder;
the bench's events are produced *before* the worker starts, so it finds a backlog, each with a
unique event and content id (nothing is a re-delivery) and an event time in production order,
`STAMP_STEP_MS` apart, so the backlog reads like a topic's history (the cycled input repeats and
shuffles its times, which made ~70 % of the records late for the window stage). Then ``signals
worker`` runs as its own process with the bench's settings, once per ONNX thread count asked for
(each with its own topics and consumer group on the same broker), and once per number of worker
processes asked for (`--live-workers`: N workers in one group split the partitions, each with the
thread count; the broker then waits `GROUP_DELAY_MS` for a new group's members, so they start
together instead of rebalancing mid-run). The rate is counted from the first answer (signal or
dead letter) to the last, so model load and the group join are left out; the worker's
``process_batch`` rate is measured in this process, at the worker's ``batch_max_size`` and the
same thread count, right after, on the same events; with N workers the ratio is against N times
that (each worker against its own `process_batch`), and the layouts' events/s compare what one
machine gets from threads against what it gets from processes.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from stream.cli.demo import terminate
from stream.connectors.broker import LocalBroker
from stream.connectors.kafka import consumer, ensure_topics, produce
from stream.core.builder import build_pipeline
from stream.core.pipeline import process_batch
from stream.core.records import Position, RawMessage
from stream.core.validate import parse_event_time
from stream.errors import ConfigError
from stream.settings import Settings, child_environment


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


STAMP_BASE_MS = 1_767_225_600_000   # 2026-01-01T00:00:00Z: a million events end 14 h later
STAMP_STEP_MS = 50
GROUP_DELAY_MS = 10_000   # with several workers: the first rebalance waits for all of them


def unique(messages: Sequence[RawMessage], start: int = 0) -> list[tuple[bytes, bytes]]:
    """(key, value) per message, ids made unique per copy and event times in order (numbered
    from `start`); a line that is not an object stays."""
    out = []
    for n, message in enumerate(messages, start):
        try:
            event = orjson.loads(message.value or b"")
        except orjson.JSONDecodeError:
            event = None
        if not isinstance(event, dict):
            out.append((f"bad-{n}".encode(), message.value or b""))
            continue
        event["event_id"] = f"{event.get('event_id', 'e')}-{n}"
        event["content_id"] = f"{event.get('content_id', 'c')}-{n}"
        if isinstance(parse_event_time(str(event.get("event_time"))), int):
            event["event_time"] = stamp(n)   # a missing or malformed one stays: a dead letter
        out.append((event["content_id"].encode(), orjson.dumps(event)))
    return out


def live_worker(settings: Settings, corpus: Sequence[RawMessage], threads: Sequence[int] = (),
                timeout_s: float = 600.0, workers: Sequence[int] = (1,)) -> dict[str, Any]:
    """events/s of the real worker on a backlog and of `process_batch` on the same events, once
    per number of worker processes in `workers` and ONNX thread count in `threads` (default:
    the configured one), on one broker."""
    records = unique(corpus)
    counts = sorted(set(threads)) or [settings.model_threads]
    layouts = [(w, n) for w in sorted(set(workers)) for n in counts]
    overrides = (("group.initial.rebalance.delay.ms", str(GROUP_DELAY_MS)),) if max(
        workers) > 1 else ()
    with local_broker(overrides) as (bootstrap, tmp):
        runs = [one_layout(live_settings(settings, bootstrap, tmp, n, w), records, tmp,
                           timeout_s, w)
                for w, n in layouts]
    return {"events": len(records), "batch_max_size": settings.batch_max_size,
            "partitions": settings.partitions, "runs": runs}


def stamp(n: int) -> str:
    """The `n`-th event time of the bench's backlog, ISO-8601 in UTC."""
    moment = datetime.fromtimestamp((STAMP_BASE_MS + n * STAMP_STEP_MS) / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@contextmanager
def local_broker(overrides: tuple[tuple[str, str], ...] = ()) -> Iterator[tuple[str, Path]]:
    """A fresh single-node Kafka in a temporary folder: its bootstrap address and the folder."""
    with tempfile.TemporaryDirectory(prefix="signals-bench-") as tmp:
        broker = LocalBroker(data_dir=Path(tmp) / "broker", port=free_port(),
                             controller_port=free_port(), overrides=overrides)
        broker.start()
        try:
            yield broker.bootstrap, Path(tmp)
        finally:
            broker.stop(clean=True)


def live_settings(settings: Settings, bootstrap: str, tmp: Path, threads: int,
                  workers: int = 1) -> Settings:
    """A run of its own per layout: its topics, consumer group, tables and state."""
    name = f"w{workers}t{threads}"
    return settings.replace(bootstrap_servers=bootstrap, topic_prefix=f"bench.{name}.",
                            app_id=f"{settings.app_id}-bench-{name}",
                            worker_data_dir=tmp / f"worker-{name}", max_event_age_s=0,
                            metrics_port=0, include_embedding=False, model_threads=threads)


def one_layout(run: Settings, records: list[tuple[bytes, bytes]], tmp: Path,
               timeout_s: float, workers: int = 1) -> dict[str, Any]:
    """The workers on the backlog, then `process_batch` here at the worker's batch size."""
    ensure_topics(run)
    produce(run, run.topics.events, records)
    drained = drain(run, len(records), tmp / f"{run.worker_data_dir.name}.log", timeout_s,
                    workers=workers)
    live = answer_rate(drained.first, drained.last, drained.answered)
    indexed = answer_rate(drained.first, max(drained.last, drained.indexed_last),
                          drained.answered)
    offline = process_batch_rate(run, records)
    return {"workers": workers, "model_threads": run.model_threads,
            "answered": drained.answered, "live_worker_events_per_s": round(live, 2),
            "process_batch_events_per_s": round(offline, 2),
            "live_vs_process_batch": round(live / (workers * offline), 3),
            "indexed": drained.indexed, "through_index_events_per_s": round(indexed, 2),
            "through_index_vs_process_batch": round(indexed / (workers * offline), 3)}


def process_batch_rate(run: Settings, records: list[tuple[bytes, bytes]]) -> float:
    """events/s of `process_batch` in this process on `records` at the run's batch size."""
    pipeline = build_pipeline(run)
    messages = [RawMessage(value, Position(run.topics.events, 0, i), key)
                for i, (key, value) in enumerate(records)]
    started = time.perf_counter()
    for i in range(0, len(messages), run.batch_max_size):
        process_batch(pipeline, messages[i:i + run.batch_max_size])
    return len(messages) / (time.perf_counter() - started)


def answer_rate(first: float, last: float, answered: int) -> float:
    """events/s between the first answer and the last (the first one opens the interval)."""
    return (answered - 1) / (last - first) if answered > 1 and last > first else 0.0


@dataclass(frozen=True, slots=True)
class Drained:
    """What `drain` saw: when the first and the last answer came (``perf_counter``), how many,
    and the same for the index stage's output (``content.similar.v1``, one record per indexed
    item), which runs behind the answers and, on a fast profile, can be the slower stage."""

    first: float
    last: float
    answered: int
    indexed_last: float
    indexed: int


def drain(settings: Settings, expected: int, log: Path, timeout_s: float,
          watch: Callable[[int, int], None] | None = None, workers: int = 1) -> Drained:
    """Start `workers` worker processes (one group); read signals and dead letters until
    `expected`, and similarity records until one per signal that is not a deletion.
    `watch(answered, first worker's pid)` is called after every poll that brought answers."""
    topics = settings.topics
    client = consumer(settings, topics.signals, topics.dlq, topics.similar)
    logs = [log] if workers == 1 else [log.with_suffix(f".{i}.log") for i in range(workers)]
    started = [start_worker(settings if workers == 1 else settings.replace(
        worker_data_dir=settings.worker_data_dir / str(i)), path) for i, path in enumerate(logs)]
    first = last = indexed_last = 0.0
    answered = indexed = to_index = 0
    deadline = time.monotonic() + timeout_s
    try:
        while (answered < expected or indexed < to_index) and time.monotonic() < deadline:
            for worker, path in zip(started, logs, strict=True):
                if worker.poll() is not None:
                    raise ConfigError(f"the bench's worker exited with {worker.returncode}: "
                                      f"{path.read_text()[-300:].strip()}")
            for tp, batch in client.poll(timeout_ms=200).items():
                now = time.perf_counter()
                if tp.topic == topics.similar:
                    indexed, indexed_last = indexed + len(batch), now
                    continue
                first = first or now
                last, answered = now, answered + len(batch)
                if tp.topic == topics.signals:
                    to_index += sum(orjson.loads(r.value)["event_type"] != "content.deleted"
                                    for r in batch)
                if watch is not None:
                    watch(answered, started[0].pid)
    finally:
        client.close()
        for worker in started:
            terminate(worker)
    if answered < expected or indexed < to_index:
        raise ConfigError(f"the bench's worker answered {answered} of {expected} events and "
                          f"indexed {indexed} of {to_index} in {timeout_s:.0f} s (its log: {log})")
    return Drained(first, last, answered, indexed_last, indexed)


def start_worker(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    """``signals worker`` as its own process with `settings`, its output appended to `log`."""
    env = child_environment(settings, os.environ)
    settings.worker_data_dir.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "stream.cli", "worker"], env=env,
                                stdout=out, stderr=subprocess.STDOUT)
