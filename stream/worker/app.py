"""The thin Faust shell: topics, one table, two agents. All logic lives in the pure core.

* ``enrich`` reads ``content.events.v1`` in micro-batches (``take_events``), runs
  `stream.core.pipeline.process_batch` in a worker thread (ONNX Runtime releases the GIL, the event
  loop keeps heart-beating), and sends signals, enriched records and dead letters.
* ``aggregate`` reads ``content.enriched.v1`` one event at a time (Faust tables can only be written
  inside stream iteration), folds it into its windows with
  `stream.windows.aggregator.WindowAggregator`, whose state is the changelogged table
  ``window-aggregates``, and sends each window as it closes.
* ``model_eval`` does the same for champion/challenger shadow records (``content.shadow.v1``,
  only written when ``SIGNALS_CHALLENGERS`` names challengers) into ``signals.model_eval.v1``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import faust
import orjson
import structlog

from stream.connectors.kafka import DLQ_MAX_MESSAGE_BYTES
from stream.connectors.security import faust_credentials
from stream.core.pipeline import OutRecord, Pipeline, dumps, process_batch
from stream.core.records import Position, RawMessage
from stream.models.manifest import load_manifest
from stream.models.shadow import eval_folder, load_references
from stream.settings import Settings
from stream.windows.aggregator import WindowAggregator, WindowSpec
from stream.worker.logs import log_batch
from stream.worker.sinks import FaustSink, Sink

log = structlog.get_logger("stream.worker.app")

TABLE_NAME = "window-aggregates"
EVAL_TABLE_NAME = "model-eval-windows"


@dataclass
class SignalsApp:
    """The Faust app and the handles tests need (agents, aggregators, sink)."""

    app: faust.App
    enrich: Any
    aggregate: Any
    model_eval: Any
    aggregator: WindowAggregator
    eval_aggregator: WindowAggregator
    sink: Sink


def window_specs(settings: Settings) -> tuple[WindowSpec, ...]:
    return (WindowSpec(settings.tumbling_window_s * 1000, settings.tumbling_window_s * 1000),
            WindowSpec(settings.hopping_window_s * 1000, settings.hopping_step_s * 1000))


def create_app(settings: Settings, pipeline: Pipeline, *, sink: Sink | None = None) -> SignalsApp:
    """Build the app; agent tests pass a `ListSink` and drive agents with `test_context()`."""
    app = faust.App(settings.app_id, **faust_options(settings))
    topics = declare_topics(app, settings)
    sink = sink or FaustSink({name: topic for name, topic in topics.items()})
    grace_ms = settings.window_grace_s * 1000
    tables = {name: window_table(app, name, settings) for name in (TABLE_NAME, EVAL_TABLE_NAME)}
    aggregator = WindowAggregator(tables[TABLE_NAME], window_specs(settings), grace_ms)
    eval_size = settings.model_eval_window_s * 1000
    eval_aggregator = WindowAggregator(
        tables[EVAL_TABLE_NAME], (WindowSpec(eval_size, eval_size),), grace_ms,
        folder=eval_folder(load_references(load_manifest(settings.manifest_path))))
    for name, windows in ((TABLE_NAME, aggregator), (EVAL_TABLE_NAME, eval_aggregator)):
        tables[name].on_recover(_invalidate_on_recover(windows))
    names = settings.topics

    @app.agent(topics[names.events])
    async def enrich(stream: Any) -> None:
        async for batch in stream.take_events(settings.batch_max_size,
                                              within=settings.batch_max_wait_s):
            messages = [raw_message(event) for event in batch]
            output = await asyncio.to_thread(process_batch, pipeline, messages)
            await send_all(sink, names.signals, output.signals)
            await send_all(sink, names.enriched, output.enriched)
            await send_all(sink, names.dlq, output.dead_letters)
            await send_all(sink, names.shadow, output.shadow)
            log_batch(messages, output.signals, output.dead_letters)

    @app.agent(topics[names.enriched])
    async def aggregate(stream: Any) -> None:
        async for event in stream.events():
            record = orjson.loads(event.value)
            closed = aggregator.update(record["group"], record, event.message.partition)
            await send_closed(sink, names.windows, "group", closed, "window_closed")

    @app.agent(topics[names.shadow])
    async def model_eval(stream: Any) -> None:
        async for event in stream.events():
            record = orjson.loads(event.value)
            closed = eval_aggregator.update(record["task"], record, event.message.partition)
            await send_closed(sink, names.model_eval, "task", closed, "model_eval_window_closed",
                              "agreement_rate")

    return SignalsApp(app, enrich, aggregate, model_eval, aggregator, eval_aggregator, sink)


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


async def send_all(sink: Sink, topic: str, records: Sequence[OutRecord]) -> None:
    for record in records:
        await sink.send(topic, record)


async def send_closed(sink: Sink, topic: str, key: str, windows: Sequence[dict[str, Any]],
                      event: str, *logged: str) -> None:
    """Send each closed window keyed by its ``key`` field, and log it (with the `logged` fields)."""
    for window in windows:
        await sink.send(topic, OutRecord(window[key].encode(), dumps(window)))
        log.info(event, **{key: window[key]}, window=window["window"]["name"],
                 start_ms=window["window"]["start_ms"], count=window["count"],
                 **{name: window[name] for name in logged})


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
        "producer_max_request_size": DLQ_MAX_MESSAGE_BYTES,   # dead letters of large inputs
    }
    credentials = faust_credentials(settings)
    if credentials is not None:
        options["broker_credentials"] = credentials
    return options
