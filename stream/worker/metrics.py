"""The worker's Prometheus metrics, all defined here, in one registry per app.

`WorkerMetrics.create()` makes a fresh `CollectorRegistry` and every metric in it, so a test
process can build several apps without "Duplicated timeseries" errors from a global registry.
The agents call the ``observe_*`` methods with plain data (`stream.core.pipeline.BatchStats`, the
closed windows); the HTTP server (`stream.worker.server`) refreshes the consumer gauges and
renders the registry on each scrape.

Faust ships a Prometheus monitor (`faust.sensors.prometheus`), but it counts Faust's own
events (messages per topic, table operations, send latency) in the *global* registry and serves
them through Faust's web server; it knows nothing of dead letters by class, model time per
version, predicted labels or event-to-signal latency, and a global registry breaks several apps per
process. So the worker keeps its own metrics; README "Operating" lists them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)

from stream.core.pipeline import BatchOutput
from stream.core.records import RawMessage

BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
SECONDS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)

TopicPartition = tuple[str, int]


@dataclass(frozen=True)
class WorkerMetrics:
    """Every metric of one worker; `registry` holds them all."""

    registry: CollectorRegistry
    events: Counter
    signals: Counter
    dead_letters: Counter
    late_records: Counter
    windows_closed: Counter
    predictions: Counter
    flags: Counter
    rebalances: Counter
    batch_size: Histogram
    batch_seconds: Histogram
    model_seconds: Histogram
    end_to_end_seconds: Histogram
    consumer_lag: Gauge
    assigned_partitions: Gauge
    ready: Gauge
    model_load_seconds: Gauge
    build: Info

    @classmethod
    def create(cls) -> WorkerMetrics:
        r = CollectorRegistry()
        return cls(
            registry=r,
            events=Counter("signals_events_total", "Input messages taken into a batch",
                           ["topic", "partition"], registry=r),
            signals=Counter("signals_signals_total", "Signal records produced", registry=r),
            dead_letters=Counter("signals_dead_letters_total",
                                 "Input messages sent to the dead-letter topic",
                                 ["error_class"], registry=r),
            late_records=Counter("signals_late_records_total",
                                 "Record-window pairs dropped because the window had closed "
                                 "(event time older than watermark - grace)", registry=r),
            windows_closed=Counter("signals_windows_closed_total", "Windows closed and emitted",
                                   ["agent", "window"], registry=r),
            predictions=Counter("signals_predictions_total", "Top labels predicted",
                                ["task", "version", "label"], registry=r),
            flags=Counter("signals_flags_total", "Flags raised on signals", ["flag"], registry=r),
            rebalances=Counter("signals_rebalances_total",
                               "Partition assignments received (one per rebalance)", registry=r),
            batch_size=Histogram("signals_batch_size", "Input messages per micro-batch",
                                 buckets=BATCH_SIZE_BUCKETS, registry=r),
            batch_seconds=Histogram("signals_batch_seconds",
                                    "Wall time of process_batch (validation, models, records)",
                                    buckets=SECONDS_BUCKETS, registry=r),
            model_seconds=Histogram("signals_model_seconds",
                                    "Wall time of one model over one batch",
                                    ["task", "version"], buckets=SECONDS_BUCKETS, registry=r),
            end_to_end_seconds=Histogram(
                "signals_end_to_end_seconds",
                "From the input record's Kafka timestamp to its signal or dead letter being "
                "handed to the producer", buckets=LATENCY_BUCKETS, registry=r),
            consumer_lag=Gauge("signals_consumer_lag",
                               "Highwater minus the consumer's position, per assigned partition",
                               ["topic", "partition"], registry=r),
            assigned_partitions=Gauge("signals_assigned_partitions",
                                      "Partitions assigned to this worker", ["topic"],
                                      registry=r),
            ready=Gauge("signals_ready", "1 when /readyz answers 200", registry=r),
            model_load_seconds=Gauge("signals_model_load_seconds",
                                     "Time to load and verify every model at start", registry=r),
            build=Info("signals_build", "Package version, git commit and model versions",
                       registry=r),
        )

    def observe_batch(self, messages: Sequence[RawMessage], output: BatchOutput,
                      batch_seconds: float, sent_at_s: float | None = None) -> None:
        """One processed micro-batch whose records were all handed to the producer."""
        sent_at_ms = (time.time() if sent_at_s is None else sent_at_s) * 1000
        self.batch_size.observe(len(messages))
        self.batch_seconds.observe(batch_seconds)
        for message in messages:
            self.events.labels(message.position.topic, str(message.position.partition)).inc()
            if message.timestamp_ms is not None:
                self.end_to_end_seconds.observe(max(0.0, sent_at_ms - message.timestamp_ms) / 1000)
        self.signals.inc(len(output.signals))
        stats = output.stats
        for error_class, count in stats.dead_letters.items():
            self.dead_letters.labels(error_class).inc(count)
        for (task, version), seconds in stats.model_seconds.items():
            self.model_seconds.labels(task, version).observe(seconds)
        for (task, version, label), count in stats.labels.items():
            self.predictions.labels(task, version, label).inc(count)
        for flag, count in stats.flags.items():
            self.flags.labels(flag).inc(count)

    def observe_windows(self, agent: str, closed: Iterable[Mapping[str, Any]],
                        late_records: int = 0) -> None:
        for window in closed:
            self.windows_closed.labels(agent, window["window"]["name"]).inc()
        if late_records:
            self.late_records.inc(late_records)

    def set_assignment(self, lags: Mapping[TopicPartition, int | None]) -> None:
        """The current assignment (source topics only) and each partition's lag, when known."""
        self.consumer_lag.clear()
        self.assigned_partitions.clear()
        per_topic: dict[str, int] = {}
        for (topic, partition), lag in sorted(lags.items()):
            per_topic[topic] = per_topic.get(topic, 0) + 1
            if lag is not None:
                self.consumer_lag.labels(topic, str(partition)).set(lag)
        for topic, count in per_topic.items():
            self.assigned_partitions.labels(topic).set(count)

    def set_build_info(self, version: str, commit: str | None,
                       models: Mapping[str, str]) -> None:
        self.build.info({"version": version, "commit": commit or "unknown",
                         **{f"model_{task}": v for task, v in sorted(models.items())}})

    def render(self) -> bytes:
        return generate_latest(self.registry)


def exported_names(registry: CollectorRegistry) -> set[str]:
    """Every sample name the registry can export, labelled series that have no value yet too
    (what dashboards and alert rules may refer to)."""
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count",
                                                                   "_created"),
                "gauge": ("",), "info": ("_info",), "summary": ("_sum", "_count", "_created")}
    names: set[str] = set()
    for family in registry.collect():
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    return names
