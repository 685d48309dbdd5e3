"""The thin Faust shell: topics, tables, agents. All logic lives in the pure core.

* ``enrich`` reads ``content.events.v1`` in micro-batches (``take_events``), runs
  `stream.core.pipeline.process_batch` in a worker thread (ONNX Runtime releases the GIL, the event
  loop keeps heart-beating), and sends signals, enriched records and dead letters.
* ``aggregate`` reads ``content.enriched.v1`` in micro-batches, folds them into their windows with
  `stream.windows.aggregator.WindowAggregator`, whose state is the changelogged table
  ``window-aggregates``, and sends the windows they closed; only once the producer has flushed
  them does the table see the batch (`stream.worker.windowing.fold_batch`: a crash re-emits a
  window instead of losing it). Late records are logged and, with
  ``SIGNALS_SEND_LATE_RECORDS``, sent to ``signals.late.v1``.
* ``model_eval`` does the same for champion/challenger shadow records (``content.shadow.v1``,
  only written when ``SIGNALS_CHALLENGERS`` names challengers) into ``signals.model_eval.v1``.
* ``index`` (`stream.worker.index_stage`) reads the compacted ``content.embeddings.v1`` (written
  by ``enrich``) and sends ``content.similar.v1`` and, per indexed item, a cluster record to
  ``content.clusters.v1`` (keyed by group).
* ``campaigns`` folds those into the signal window kinds (`stream.similarity.campaigns`, table
  ``campaign-windows``) and sends ``signals.campaigns.v1``: near-duplicates and their clusters
  per window.
* a timer closes the windows of partitions whose sources all went idle, without waiting for a
  record (`stream.worker.windowing.close_idle`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import faust
import orjson
import structlog

from stream.connectors.kafka import DLQ_MAX_MESSAGE_BYTES, compacted_topics
from stream.connectors.security import faust_credentials
from stream.core.outputs import Record
from stream.core.pipeline import Pipeline, process_batch
from stream.core.records import Position, RawMessage
from stream.core.topics import Topics
from stream.models.manifest import load_manifest
from stream.models.shadow import eval_folder, load_references
from stream.settings import Settings
from stream.similarity.campaigns import CAMPAIGN_FOLDER
from stream.similarity.index import VectorIndex
from stream.similarity.kinds import open_index
from stream.windows.aggregator import WindowAggregator
from stream.windows.kinds import TumblingWindow, window_kinds
from stream.worker import health as health_signals
from stream.worker.health import Health
from stream.worker.index_stage import similarity_agent
from stream.worker.logs import log_batch
from stream.worker.metrics import WorkerMetrics
from stream.worker.sinks import FaustSink, Sink
from stream.worker.transport import WorkerTransport
from stream.worker.windowing import BatchWrites, WindowOutput, WindowStage, close_idle, fold_batch

log = structlog.get_logger("stream.worker.app")

TABLE_NAME = "window-aggregates"
EVAL_TABLE_NAME = "model-eval-windows"
CAMPAIGN_TABLE_NAME = "campaign-windows"


@dataclass
class SignalsApp:
    """The Faust app and the handles tests need (agents, aggregators, sink, metrics, health)."""

    app: faust.App
    enrich: Any
    aggregate: Any
    model_eval: Any
    aggregator: WindowAggregator
    eval_aggregator: WindowAggregator
    sink: Sink
    metrics: WorkerMetrics
    health: Health
    index_stage: Any = None
    index: VectorIndex | None = None
    campaigns: Any = None
    campaign_aggregator: WindowAggregator | None = None
    idle_stages: tuple[WindowStage, ...] = ()   # what the idle timer ticks (`close_idle`)


def create_app(settings: Settings, pipeline: Pipeline, *, sink: Sink | None = None) -> SignalsApp:
    """Build the app; agent tests pass a `ListSink` and drive agents with `test_context()`."""
    app = faust.App(settings.app_id, **faust_options(settings))
    app.transport = transport = WorkerTransport(app.conf.broker_consumer, app)
    transport.compacted = compacted_topics(settings)
    metrics, health = WorkerMetrics.create(), Health()
    health_signals.connect(app, health, metrics)
    topics = declare_topics(app, settings)
    durable = _flushing(app) if sink is None else _nothing   # a test's ListSink holds everything
    sink = sink or FaustSink({name: topic for name, topic in topics.items()})
    (aggregator, eval_aggregator, campaign_aggregator), writes = window_aggregators(app, settings)
    names = settings.topics

    @app.agent(topics[names.events])
    async def enrich(stream: Any) -> None:
        async for batch in stream.take_events(settings.batch_max_size,
                                              within=settings.batch_max_wait_s):
            await uncancelled(enrich_batch(pipeline, sink, names, metrics, batch))

    signal_stage, eval_stage, campaign_stage = _window_stages(
        settings, (aggregator, eval_aggregator, campaign_aggregator), writes)

    def window_agent(stage: WindowStage) -> Callable[[Any], Awaitable[None]]:
        async def fold_stream(stream: Any) -> None:
            async for batch in stream.take_events(settings.window_batch_max_size,
                                                  within=settings.batch_max_wait_s):
                records = [(orjson.loads(e.value), e.message.partition) for e in batch]
                await uncancelled(fold_batch(stage, records, sink, metrics, durable))
        return fold_stream

    aggregate = app.agent(topics[names.enriched], name="aggregate")(window_agent(signal_stage))
    model_eval = app.agent(topics[names.shadow], name="model_eval")(window_agent(eval_stage))
    campaigns = app.agent(topics[names.clusters], name="campaigns")(window_agent(campaign_stage))

    async def close_idle_windows() -> None:   # the stages with idleness (not model_eval)
        if not (app.rebalancing or app.in_recovery):
            await close_idle((signal_stage, campaign_stage), health.assigned, sink, metrics,
                             durable)

    if settings.watermark_idle_s:
        app.timer(interval=idle_tick_s(settings))(close_idle_windows)

    index = open_index(settings)
    index_stage = similarity_agent(app, topics[names.embeddings], settings, index, sink)
    return SignalsApp(app, enrich, aggregate, model_eval, aggregator, eval_aggregator, sink,
                      metrics, health, index_stage, index, campaigns, campaign_aggregator,
                      (signal_stage, campaign_stage))


def _window_stages(
    settings: Settings, aggregators: tuple[WindowAggregator, WindowAggregator, WindowAggregator],
    writes: dict[str, BatchWrites],
) -> tuple[WindowStage, WindowStage, WindowStage]:
    """The three window stages: signal windows, champion/challenger windows, campaigns."""
    names = settings.topics
    aggregator, eval_aggregator, campaign_aggregator = aggregators
    signal_windows = WindowOutput(
        "aggregate", names.windows, "group", "window_closed",
        late_topic=names.late if settings.send_late_records else None, report_late=True)
    eval_windows = WindowOutput("model_eval", names.model_eval, "task",
                                "model_eval_window_closed", logged=("agreement_rate",))
    campaign_windows = WindowOutput("campaigns", names.campaigns, "group",
                                    "campaign_window_closed",
                                    logged=("near_duplicates", "clusters"))
    return (WindowStage(aggregator, signal_windows, writes[TABLE_NAME], names.enriched),
            WindowStage(eval_aggregator, eval_windows, writes[EVAL_TABLE_NAME], names.shadow),
            WindowStage(campaign_aggregator, campaign_windows, writes[CAMPAIGN_TABLE_NAME],
                        names.clusters))


def idle_tick_s(settings: Settings) -> float:
    """How often the timer looks for idle partitions: a quarter of the idle time, 0.5 to 5 s."""
    return min(5.0, max(0.5, settings.watermark_idle_s / 4))


def window_aggregators(
    app: faust.App, settings: Settings
) -> tuple[tuple[WindowAggregator, WindowAggregator, WindowAggregator], dict[str, BatchWrites]]:
    """The signal windows, the champion/challenger windows and the campaign windows, each on
    its changelogged table (through `BatchWrites`; re-indexed after recovery); the tables'
    writes by table name."""
    grace_ms = settings.window_grace_s * 1000
    names = (TABLE_NAME, EVAL_TABLE_NAME, CAMPAIGN_TABLE_NAME)
    writes = {name: BatchWrites(window_table(app, name, settings)) for name in names}
    idle_ms = int(settings.watermark_idle_s * 1000) or None
    sources = tuple(range(settings.partitions)) if idle_ms else ()
    aggregator = WindowAggregator(   # waits for every input partition, unless it goes idle
        writes[TABLE_NAME], window_kinds(settings), grace_ms, sources=sources, idle_ms=idle_ms,
        clock=time.monotonic)
    eval_size = settings.model_eval_window_s * 1000
    eval_aggregator = WindowAggregator(
        writes[EVAL_TABLE_NAME], (TumblingWindow(eval_size),), grace_ms,
        folder=eval_folder(load_references(load_manifest(settings.manifest_path))))
    campaign_aggregator = WindowAggregator(   # sources: the content.embeddings.v1 partitions
        writes[CAMPAIGN_TABLE_NAME], window_kinds(settings), grace_ms, folder=CAMPAIGN_FOLDER,
        sources=sources, idle_ms=idle_ms, clock=time.monotonic)
    windows = (aggregator, eval_aggregator, campaign_aggregator)
    for name, stage in zip(names, windows, strict=True):
        writes[name].table.on_recover(_invalidate_on_recover(stage))
    return windows, writes


async def enrich_batch(pipeline: Pipeline, sink: Sink, names: Topics, metrics: WorkerMetrics,
                       batch: Sequence[Any]) -> None:
    """One micro-batch: the pure core in a thread, then every record to the producer, then the
    log lines and metrics (so the counts are of records handed to the producer)."""
    messages = [raw_message(event) for event in batch]
    started = time.perf_counter()
    output = await asyncio.to_thread(process_batch, pipeline, messages)
    elapsed = time.perf_counter() - started
    await send_all(sink, names.signals, output.signals)
    await send_all(sink, names.enriched, output.enriched)
    await send_all(sink, names.dlq, output.dead_letters)
    await send_all(sink, names.shadow, output.shadow)
    await send_all(sink, names.embeddings, output.embeddings)
    log_batch(messages, output.signals, output.dead_letters)
    metrics.observe_batch(messages, output, elapsed)


async def uncancelled(work: Awaitable[None]) -> None:
    """Run `work` to its end even when the agent is cancelled meanwhile (a SIGTERM stops agents
    by cancelling them), then pass the cancellation on. Faust's ``take_events`` acks a batch's
    events when the agent leaves the batch, cancelled or not, and the stopping consumer commits
    what was acked: a batch cut off half-sent would be committed with signals never sent."""
    task = asyncio.ensure_future(work)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        if not task.done():
            log.info("finishing_batch_before_stop")
            await asyncio.wait([task])
        if not task.cancelled() and task.exception() is not None:
            log.error("batch_failed_while_stopping", error=repr(task.exception()))
        raise


def window_table(app: faust.App, name: str, settings: Settings) -> Any:
    """A changelogged table of window aggregates, co-partitioned with its source topic."""
    return app.Table(name, default=None, partitions=settings.partitions,
                     schema=faust.Schema(key_serializer="json", value_serializer="json"))


def declare_topics(app: faust.App, settings: Settings) -> dict[str, Any]:
    """Every topic with its partition count, raw bytes in and out (we serialise ourselves)."""
    return {name: app.topic(name, partitions=settings.partitions, key_serializer="raw",
                            value_serializer="raw", replicas=settings.replication_factor)
            for name in settings.topics.all()}


def raw_message(event: Any) -> RawMessage:
    message = event.message
    timestamp = message.timestamp
    return RawMessage(
        value=message.value, key=message.key,
        position=Position(message.topic, message.partition, message.offset),
        timestamp_ms=int(timestamp * 1000) if timestamp else None)


async def send_all(sink: Sink, topic: str, records: Sequence[Record]) -> None:
    for record in records:
        await sink.send(topic, record)


def _flushing(app: faust.App) -> Callable[[], Awaitable[None]]:
    async def flush() -> None:
        await app.producer.flush()
    return flush


async def _nothing() -> None:
    return None


def _invalidate_on_recover(aggregator: WindowAggregator) -> Any:
    async def on_recover() -> None:
        aggregator.invalidate_index()
    return on_recover


def faust_options(settings: Settings) -> dict[str, Any]:
    servers = [f"kafka://{s.strip()}" for s in settings.bootstrap_servers.split(",")]
    options: dict[str, Any] = {
        "broker": servers, "store": "memory://", "autodiscover": False,
        "topic_partitions": settings.partitions,
        "topic_replication_factor": settings.replication_factor,
        "consumer_auto_offset_reset": "earliest", "datadir": str(settings.worker_data_dir),
        "web_enabled": False, "web_port": settings.web_port,
        "producer_acks": -1, "table_standby_replicas": 0,
        "broker_session_timeout": settings.session_timeout_s,
        "broker_heartbeat_interval": settings.heartbeat_interval_s,
        "consumer_group_instance_id": settings.group_instance_id.strip() or None,
        "producer_max_request_size": DLQ_MAX_MESSAGE_BYTES,   # dead letters of large inputs
    }
    credentials = faust_credentials(settings)
    if credentials is not None:
        options["broker_credentials"] = credentials
    return options
