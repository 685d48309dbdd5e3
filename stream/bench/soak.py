"""`signals bench --soak N`: the worker's memory over a long backlog (issue #11: resident set
growth under 10 % between 100k and 1M events).

Not part of `make test` or `make bench`: at the default profile's ~100 events/s on 2 cores a
million events take hours; run it with ``SIGNALS_PROFILE=fast``, or on the target machine.

N events (the input cycled, each with its own ids, so nothing is a re-delivery) are produced to a
fresh local broker in chunks, then ``signals worker`` drains them as its own process, as in
`stream.bench.live`. The worker's resident set (``VmRSS`` in ``/proc/PID/status``) is read every
N/20 answers; the growth is the last reading against the first at or after N/10 answers (100k of
1M), so model load, the group join and the first batches are left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stream.bench.live import answer_rate, drain, live_settings, local_broker, unique
from stream.connectors.kafka import ensure_topics, produce
from stream.core.records import RawMessage
from stream.errors import ConfigError
from stream.settings import Settings

CHUNK = 50_000          # events produced per producer, so the backlog is never all in memory
READINGS = 20           # resident-set readings over the run
TIMEOUT_S = 6 * 3600.0


def rss_mib(pid: int) -> float:
    """The resident set of process `pid` in MiB (Linux ``/proc``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise ConfigError(f"/proc/{pid}/status has no VmRSS line")


def soak(settings: Settings, corpus: Sequence[RawMessage], events: int,
         timeout_s: float = TIMEOUT_S) -> dict[str, Any]:
    """Drain `events` through the real worker, reading its resident set as it goes."""
    if not Path("/proc/self/status").is_file():
        raise ConfigError("--soak reads the worker's memory from /proc/PID/status: Linux only")
    if events < READINGS:
        raise ConfigError(f"--soak {events}: give at least {READINGS} events")
    step = events // READINGS
    readings: list[dict[str, float]] = []

    def watch(answered: int, pid: int) -> None:
        if answered >= (len(readings) + 1) * step:
            readings.append({"answered": answered, "rss_mib": round(rss_mib(pid), 1)})

    with local_broker() as (bootstrap, tmp):
        run = live_settings(settings, bootstrap, tmp, settings.model_threads)
        ensure_topics(run)
        for start in range(0, events, CHUNK):
            chunk = [corpus[i % len(corpus)] for i in range(start, min(events, start + CHUNK))]
            produce(run, run.topics.events, unique(chunk, start))
        drained = drain(run, events, tmp / "worker.log", timeout_s, watch)
    base = next(r for r in readings if r["answered"] >= events // 10)
    rate = answer_rate(drained.first, drained.last, drained.answered)
    return {"events": events, "answered": drained.answered,
            "profile": settings.profile or "default",
            "model_threads": settings.model_threads, "batch_max_size": settings.batch_max_size,
            "live_worker_events_per_s": round(rate, 2),
            "rss_mib": readings, "growth_from": base,
            "rss_growth": round(readings[-1]["rss_mib"] / base["rss_mib"] - 1, 4)}


def soak_summary(result: dict[str, Any]) -> list[str]:
    base, end = result["growth_from"], result["rss_mib"][-1]
    return [f"soak: {result['answered']} events through the worker (profile "
            f"{result['profile']}, {result['model_threads']} ONNX thread(s)) at "
            f"{result['live_worker_events_per_s']:.1f} events/s",
            "  RSS MiB by events answered: " + ", ".join(
                f"{r['answered']:.0f}: {r['rss_mib']:.0f}" for r in result["rss_mib"]),
            f"  growth {base['answered']:.0f} -> {end['answered']:.0f}: "
            f"{result['rss_growth']:+.1%} (issue #11 asks < 10 %)"]
