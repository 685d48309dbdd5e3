"""Helpers for tests on the real broker: worker processes (one, or several of one app id), their
metrics endpoints, and a topic reader."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import orjson
from prometheus_client.parser import text_string_to_metric_families

from stream.cli.demo import terminate
from stream.connectors.kafka import consumer
from stream.settings import Settings, child_environment

DEFAULT_METRICS_PORT = Settings().metrics_port


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class WorkerProcess(subprocess.Popen[bytes]):
    """A `signals worker` process that knows where its /metrics, /healthz and /readyz are."""

    base_url: str = ""
    log_path: Path | None = None

    def get(self, path: str, timeout_s: float = 5.0) -> tuple[int, bytes]:
        """HTTP GET on the worker's ops server: (status, body); (0, b"") when nothing answers."""
        try:
            with urllib.request.urlopen(self.base_url + path, timeout=timeout_s) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()
        except (urllib.error.URLError, OSError):
            return 0, b""

    def metrics(self) -> dict[str, list[Any]]:
        """The scraped samples by name (each a prometheus_client `Sample`); {} when no answer."""
        status, body = self.get("/metrics")
        if status != 200:
            return {}
        found: dict[str, list[Any]] = defaultdict(list)
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                found[sample.name].append(sample)
        return found

    def assigned(self, topic: str) -> set[int]:
        """Partitions of `topic` this worker reports (one lag series per assigned partition)."""
        return {int(s.labels["partition"]) for s in self.metrics().get("signals_consumer_lag", [])
                if s.labels["topic"] == topic}

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text()[-chars:] if self.log_path else ""


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes `Settings.load` in a child process equal `settings`."""
    return child_environment(settings, os.environ)


@contextmanager
def running_worker(settings: Settings, log_path: Path) -> Iterator[WorkerProcess]:
    """`signals worker` in its own process, stopped with SIGTERM like an operator would.

    Its ops server listens on ``settings.metrics_port``, except that the fixed default is
    replaced by a free port (parallel test runs on one machine would share it); the process's
    `base_url` says where."""
    if settings.metrics_port == DEFAULT_METRICS_PORT:
        settings = settings.replace(metrics_port=free_port())
    settings = settings.replace(metrics_host="127.0.0.1")
    with log_path.open("wb") as log:
        process = WorkerProcess([sys.executable, "-m", "stream.cli", "worker"],
                                env=settings_env(settings), stdout=log, stderr=subprocess.STDOUT)
        process.base_url = f"http://127.0.0.1:{settings.metrics_port}"
        process.log_path = log_path
        try:
            yield process
        finally:
            stop(process)


stop = terminate   # SIGTERM, wait, SIGKILL after the timeout: the exit code (the demo's own)


@contextmanager
def running_workers(settings: Settings, count: int, log_dir: Path) -> Iterator[list[WorkerProcess]]:
    """`count` workers of one app id (one consumer group), each with its own data folder, log
    (``worker-<i>.log``) and ops port; all stopped at the end. Kill or stop some in the test."""
    with ExitStack() as stack:
        workers = [stack.enter_context(running_worker(
            settings.replace(worker_data_dir=log_dir / f"worker-{i}-data"),
            log_dir / f"worker-{i}.log")) for i in range(count)]
        yield workers


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str,
               workers: list[WorkerProcess] | None = None, interval_s: float = 0.2) -> float:
    """Poll `condition` until true; the seconds it took. Fails (with the logs of workers that
    exited) after `timeout_s`."""
    started = time.monotonic()
    while not condition():
        for worker in workers or []:
            if worker.poll() is not None:
                raise AssertionError(f"worker exited with {worker.returncode} while waiting "
                                     f"for {what}:\n{worker.log_tail()}")
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)
    return time.monotonic() - started


def partitions_served(workers: list[WorkerProcess], topic: str) -> list[set[int]]:
    """Each running worker's assigned partitions of `topic`, from its metrics."""
    return [w.assigned(topic) if w.poll() is None else set() for w in workers]


def all_served_once(workers: list[WorkerProcess], topic: str, partitions: int) -> bool:
    """Every partition of `topic` is assigned to exactly one running worker, and each running
    worker is ready (no rebalance in progress)."""
    running = [w for w in workers if w.poll() is None]
    served = partitions_served(running, topic)
    flat = [p for parts in served for p in parts]
    return (sorted(flat) == list(range(partitions))
            and all(w.get("/readyz")[0] == 200 for w in running))


def collect(settings: Settings, topics: list[str], *, until: Callable[[dict[str, list[Any]]], bool],
            timeout_s: float, worker: subprocess.Popen[bytes] | None = None,
            worker_log: Path | None = None) -> dict[str, list[Any]]:
    """Read `topics` from the beginning until `until(records_by_topic)` or the timeout."""
    client = consumer(settings, *topics)
    seen: dict[str, list[Any]] = defaultdict(list)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and not until(seen):
            if worker is not None and worker.poll() is not None:
                log = worker_log.read_text()[-3000:] if worker_log else ""
                raise AssertionError(f"worker exited with {worker.returncode}:\n{log}")
            for records in client.poll(timeout_ms=300).values():
                for record in records:
                    seen[record.topic].append(record)
    finally:
        client.close()
    return seen


def values(records: list[Any]) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in records]


def records_on(settings: Settings, topic: str) -> int:
    """How many records `topic` holds (the sum of its end offsets: never truncated, no markers)."""
    from kafka import TopicPartition

    client = consumer(settings)
    try:
        parts = [TopicPartition(topic, p) for p in client.partitions_for_topic(topic) or ()]
        return sum(client.end_offsets(parts).values())
    finally:
        client.close()


def read_all(settings: Settings, topic: str, seen: dict[str, list[Any]],
             timeout_s: float = 30) -> None:
    """Complete ``seen[topic]`` up to the records the topic holds now (a `collect` that stopped
    on other topics may not have read all of this one yet)."""
    total = records_on(settings, topic)
    if len(seen[topic]) < total:
        seen[topic] = collect(settings, [topic], until=lambda s: len(s[topic]) >= total,
                              timeout_s=timeout_s)[topic]
