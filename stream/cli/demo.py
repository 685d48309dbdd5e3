"""`signals demo`: a fresh local broker, a real worker process, sample events, printed signals.

Everything is real: Apache Kafka started from the jars Maven fetched, the worker in its own process
(`signals worker`), the sample produced with kafka-python, the outputs read back from the topics.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from prometheus_client.parser import text_string_to_metric_families

from stream.connectors.broker import LocalBroker
from stream.connectors.jsonl import keyed_lines, open_input, read_lines
from stream.connectors.kafka import consumer, ensure_topics, produce
from stream.paths import STATE_ROOT
from stream.settings import Settings, child_environment

DEMO_DIR = STATE_ROOT / ".kafka" / "demo"
STACK_DUMP_S = 3.0   # the time a hung worker gets to write its stack dump (SIGUSR1)
Keyed = tuple[bytes | None, bytes]   # a keyed line of the sample


@dataclass
class Demo:
    settings: Settings
    events: Path
    port: int
    timeout_s: float
    keep_broker: bool = False
    seen: dict[str, int] = field(default_factory=lambda: {"signals": 0, "dlq": 0, "windows": 0,
                                                          "near_duplicates": 0, "campaigns": 0})
    titles: dict[str, str] = field(default_factory=dict)

    def run(self) -> int:
        broker = LocalBroker(data_dir=DEMO_DIR / "broker", port=self.port,
                             controller_port=self.port + 1)
        with open_input(self.events) as handle:
            lines = list(keyed_lines(read_lines(handle)))
        self.titles = sample_titles(line for _, line in lines)
        step("starting a fresh single-node Kafka (KRaft) from deploy/kafka/lib")
        broker.stop(clean=True)
        print("   ", broker.start())
        # the demo's events are a fixed day of history, produced now: no age horizon for them
        # ... and a short idle time: the sample's last events (a later burst) come after a pause,
        # so every quiet partition is idle and the windows before them close (see `waves`)
        settings = self.settings.replace(bootstrap_servers=broker.bootstrap,
                                         worker_data_dir=DEMO_DIR / "worker", log_format="json",
                                         max_event_age_s=0, watermark_idle_s=IDLE_S)
        worker: subprocess.Popen[bytes] | None = None
        try:
            ensure_topics(settings)
            step("starting `signals worker` (log: .kafka/demo/worker.log)")
            worker = start_worker(settings)
            if settings.metrics_port:
                base = ops_url(settings)
                print(f"    metrics {base}/metrics · liveness {base}/healthz · "
                      f"readiness {base}/readyz")
            step("reading content.signals.v1, content.events.dlq.v1, signals.windows.v1, "
                 "content.similar.v1 and signals.campaigns.v1")
            self.produce_and_watch(settings, lines)
            if settings.metrics_port:
                step(f"headline metrics read back from {ops_url(settings)}/metrics")
                for line in headline_metrics(ops_url(settings)):
                    print("   ", line)
        finally:
            if worker is not None:
                stop_worker(worker)
            if not self.keep_broker:
                print("   ", broker.stop())
        return self.summary(len(lines))

    def produce_and_watch(self, settings: Settings, lines: list[Keyed]) -> None:
        """Each wave of the sample, then what comes back, until its events are answered and a
        pause has passed (the last one is longer: closing windows arrive)."""
        topics = settings.topics
        client = consumer(settings, topics.signals, topics.dlq, topics.windows, topics.similar,
                          topics.campaigns)
        try:
            produced = 0
            for wave in waves(lines):
                step(f"producing {len(wave)} events from {self.events.name}")
                produce(settings, topics.events, wave)
                produced += len(wave)
                self.watch(client, topics, expected=produced, quiet_s=IDLE_S + 1.0)
            self.watch(client, topics, expected=produced, quiet_s=8.0)
        finally:
            client.close()

    def watch(self, client: Any, topics: Any, expected: int, quiet_s: float) -> None:
        """Print what arrives until `expected` events are answered and `quiet_s` more passed."""
        deadline = time.monotonic() + self.timeout_s
        quiet_until: float | None = None
        while time.monotonic() < deadline:
            for records in client.poll(timeout_ms=500).values():
                for record in records:
                    self.show(record.topic, orjson.loads(record.value), topics)
            done = self.seen["signals"] + self.seen["dlq"] >= expected
            if done and quiet_until is None:
                quiet_until = time.monotonic() + quiet_s
            if quiet_until is not None and time.monotonic() > quiet_until:
                return

    def show(self, topic: str, value: dict[str, Any], topics: Any) -> None:
        if topic == topics.signals:
            self.seen["signals"] += 1
            print(format_signal(value, self.titles))
        elif topic == topics.similar:
            line = format_similar(value, self.titles)
            if line:
                self.seen["near_duplicates"] += bool(value["flags"])
                print(line)
        elif topic == topics.campaigns:
            line = format_campaign(value)
            if line:
                self.seen["campaigns"] += 1
                print(line)
        elif topic == topics.dlq:
            self.seen["dlq"] += 1
            error, source = value["error"], value["source"]
            print(f"  DLQ     offset {source['partition']}:{source['offset']:<4} "
                  f"{error['class']}: {error['message'][:90]}")
        else:
            self.seen["windows"] += 1
            w = value["window"]
            if w["kind"] == "tumbling":  # hopping windows are counted in the summary only
                print(f"  WINDOW  {w['name']} {iso(w['start_ms'])}-{iso(w['end_ms'])}  "
                      f"{value['group']:<36} count={value['count']} "
                      f"flag_rates={value['flag_rates'] or '{}'}")

    def summary(self, expected: int) -> int:
        total = self.seen["signals"] + self.seen["dlq"]
        step(f"{self.seen['signals']} signals + {self.seen['dlq']} dead letters = {total} of "
             f"{expected} events; {self.seen['windows']} closed windows; "
             f"{self.seen['near_duplicates']} near-duplicates, "
             f"{self.seen['campaigns']} tumbling windows with near-duplicates (embedded usearch "
             "index; "
             "`signals db start` and SIGNALS_SIMILARITY_INDEX=pgvector move it to PostgreSQL)")
        return 0 if total == expected else 1


IDLE_S = 2.0          # SIGNALS_WATERMARK_IDLE_S of the demo's worker
LATER_MS = 300_000    # an event this much later than all before it starts a new wave


def waves(lines: list[Keyed]) -> list[list[Keyed]]:
    """The sample in waves, split before each event more than `LATER_MS` after every earlier one
    (the sample's last minute comes ten minutes after the rest): produced with a pause between,
    so the windows before it close though no partition sends anything more."""
    out: list[list[Keyed]] = [[]]
    latest: int | None = None
    for key, line in lines:
        ts = event_ms(line)
        if ts is not None and latest is not None and ts > latest + LATER_MS and out[-1]:
            out.append([])
        if ts is not None:
            latest = ts if latest is None else max(latest, ts)
        out[-1].append((key, line))
    return out


def event_ms(line: bytes) -> int | None:
    try:
        value = orjson.loads(line).get("event_time")
        return int(datetime.fromisoformat(value).timestamp() * 1000)
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
        return None


def sample_titles(lines: Any) -> dict[str, str]:
    """event_id → a short title, for printing (the signal records carry ids, not texts)."""
    titles: dict[str, str] = {}
    for line in lines:
        try:
            data = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        text = data.get("title") or data.get("text") or ""
        titles[data.get("event_id", "")] = text if len(text) <= 38 else text[:37] + "…"
    return titles


SHOWN_TASKS = ("language", "topic", "sentiment", "emotion", "safety", "spam")


def format_signal(value: dict[str, Any], titles: dict[str, str]) -> str:
    """One line per signal: each model's label and score (``?`` = unreliable, non-English)."""
    signals = value["signals"]
    parts = [f"{task}={s['label']}{'' if s.get('reliable', True) else '?'} {s['score']:.2f}"
             for task in SHOWN_TASKS if (s := signals.get(task))]
    if value["flags"]:
        parts.append("FLAGS " + ",".join(value["flags"]))
    title = titles.get(value["event_id"], "")
    return (f"  SIGNAL  {value['content_type']:<9} {value['content_id']:<8} {title!r:<42} "
            f"{' · '.join(parts) or 'deleted: no text, no models'}")


def ops_url(settings: Settings) -> str:
    host = "127.0.0.1" if settings.metrics_host in ("0.0.0.0", "") else settings.metrics_host
    return f"http://{host}:{settings.metrics_port}"


def headline_metrics(base_url: str) -> list[str]:
    """A few lines from the worker's /metrics: what went in, what came out, how long it took."""
    try:
        with urllib.request.urlopen(base_url + "/metrics", timeout=5) as response:
            text = response.read().decode()
    except (urllib.error.URLError, OSError) as exc:
        return [f"(no answer from {base_url}/metrics: {exc})"]
    values: dict[str, float] = defaultdict(float)
    letters: dict[str, float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[sample.name] += sample.value
            if sample.name == "signals_dead_letters_total":
                letters[sample.labels["error_class"]] += sample.value
    count = values["signals_end_to_end_seconds_count"] or 1
    return [
        f"signals_events_total {values['signals_events_total']:.0f} · signals_signals_total "
        f"{values['signals_signals_total']:.0f} · signals_dead_letters_total "
        f"{values['signals_dead_letters_total']:.0f} "
        f"({', '.join(f'{k} {v:.0f}' for k, v in sorted(letters.items())) or 'none'})",
        f"mean end-to-end {values['signals_end_to_end_seconds_sum'] / count:.2f} s · "
        f"batches {values['signals_batch_size_count']:.0f} · windows closed "
        f"{values['signals_windows_closed_total']:.0f} · model load "
        f"{values['signals_model_load_seconds']:.2f} s · ready {values['signals_ready']:.0f}",
    ]


def format_similar(value: dict[str, Any], titles: dict[str, str]) -> str | None:
    """A line for a flagged near-duplicate, and for a show's related items; None otherwise."""
    duplicate, related = value["near_duplicate"], value["related"]
    if duplicate and duplicate["flagged"]:
        return (f"  NEARDUP {value['content_type']:<9} {value['content_id']:<8} "
                f"{titles.get(value['event_id'], '')!r:<42} copy of {duplicate['content_id']} "
                f"{titles.get(duplicate['event_id'], '')!r} (cos {duplicate['cosine']:.2f})")
    if value["content_type"] == "show" and related:
        near = ", ".join(f"{r['content_id']} {r['cosine']:.2f}" for r in related[:3])
        return f"  RELATED show      {value['content_id']:<8} {near}"
    return None


def format_campaign(value: dict[str, Any]) -> str | None:
    """A line for a tumbling campaign window that holds near-duplicates; None otherwise."""
    w = value["window"]
    if w["kind"] != "tumbling" or not value["near_duplicates"]:
        return None
    top = ", ".join(f"{c['cluster']} ×{c['near_duplicates']}" for c in value["top_clusters"])
    return (f"  CAMPAIGN {w['name']} {iso(w['start_ms'])}-{iso(w['end_ms'])}  "
            f"{value['group']:<24} {value['near_duplicates']} near-duplicates of "
            f"{value['count']} items in {value['clusters']} cluster(s): {top}")


def start_worker(settings: Settings) -> subprocess.Popen[bytes]:
    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    env = child_environment(settings, os.environ)
    log = (DEMO_DIR / "worker.log").open("ab")
    return subprocess.Popen([sys.executable, "-m", "stream.cli", "worker"], env=env,
                            stdout=log, stderr=subprocess.STDOUT)


def terminate(process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> int:
    """SIGTERM (if still running), wait, SIGKILL after `timeout_s`; the exit code. A worker
    still running then gets SIGUSR1 first: its stack dump (every thread and task, from mode's
    worker) goes to its log, so a shutdown that hung says where."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGUSR1)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(STACK_DUMP_S)
            process.kill()
            process.wait()
    return process.returncode


def stop_worker(worker: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    print(f"    worker stopped (exit code {terminate(worker, timeout_s)})")


def step(message: str) -> None:
    print(f"==> {message}", flush=True)


def iso(ms: int) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(ms / 1000))
