"""Helpers for tests on the real broker: a worker process per test and a topic reader."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any

import orjson

from stream.connectors.kafka import consumer
from stream.settings import ENV_PREFIX, Settings


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes `Settings.load` in a child process equal `settings`."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(ENV_PREFIX) and k != "KAFKA_BOOTSTRAP_SERVERS"}
    for f in fields(settings):
        value = getattr(settings, f.name)
        text = str(value).lower() if isinstance(value, bool) else str(value)
        env[ENV_PREFIX + f.name.upper()] = text
    return env


@contextmanager
def running_worker(settings: Settings, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`signals worker` in its own process, stopped with SIGTERM like an operator would."""
    with log_path.open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "stream.cli", "worker"],
                                   env=settings_env(settings), stdout=log,
                                   stderr=subprocess.STDOUT)
        try:
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


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
