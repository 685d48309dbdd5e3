"""The ``index`` agent of the worker: embeddings in, similarity signals and cluster records out.

It reads the compacted ``content.embeddings.v1`` (written by ``enrich``) in micro-batches,
queries and updates the similarity index with
`stream.similarity.campaigns.index_with_clusters` in a worker thread, and sends
``content.similar.v1`` (keyed by content id) and ``content.clusters.v1`` (keyed by group, for
the ``campaigns`` window agent in `stream.worker.app`). An embedded index is rebuilt per
partition from the topic itself: at each assignment it is cleared and everything before the
first offset consumed is applied first (`stream.similarity.rebuild`), the way a table recovers
from its changelog.
"""

from __future__ import annotations

import asyncio
from typing import Any

import faust
import structlog

from stream.core.outputs import EmbeddingRecord
from stream.core.records import Position
from stream.settings import Settings
from stream.similarity.calibration import shipped_threshold
from stream.similarity.campaigns import index_with_clusters
from stream.similarity.index import VectorIndex
from stream.similarity.kinds import EMBEDDED_KINDS
from stream.similarity.rebuild import rebuild
from stream.worker.sinks import Sink

log = structlog.get_logger("stream.worker.app")


def similarity_agent(app: faust.App, topic: Any, settings: Settings, index: VectorIndex,
                     sink: Sink) -> Any:
    """The index stage: embeddings in, near-duplicate and related-content signals out.

    An embedded index holds the partitions of ``content.embeddings.v1`` this worker is assigned:
    at each assignment it is cleared and rebuilt from them in the background, and the agent
    waits for that before its next batch (records read twice — rebuilt, then consumed — are
    idempotent upserts). A pgvector index is shared and durable: nothing to rebuild."""
    threshold = shipped_threshold(settings)  # the calibrated one of the encoder this worker runs
    ready = asyncio.Event()
    ready.set()
    if settings.similarity_index in EMBEDDED_KINDS:
        app.on_partitions_assigned.connect(rebuilding(app, settings, index, ready))

    @app.agent(topic, name="index")
    async def index_stage(stream: Any) -> None:
        async for batch in stream.take_events(settings.batch_max_size,
                                              within=settings.batch_max_wait_s):
            await ready.wait()
            await index_events(index, settings, sink, batch, threshold)

    return index_stage


async def index_events(index: VectorIndex, settings: Settings, sink: Sink, batch: Any,
                       threshold: float) -> None:
    """One micro-batch: the index in a thread, then similar and cluster records to the sink."""
    records = [(EmbeddingRecord.from_message(e.message.key, e.message.value),
                Position(e.message.topic, e.message.partition, e.message.offset))
               for e in batch]
    similar, clusters = await asyncio.to_thread(
        index_with_clusters, index, records, threshold=threshold,
        related_k=settings.related_k)
    for record in similar:
        await sink.send(settings.topics.similar, record)
    for cluster in clusters:
        await sink.send(settings.topics.clusters, cluster)
    for record in similar:
        if record.near_duplicate is not None and record.near_duplicate.flagged:
            log.info("near_duplicate", content_id=record.content_id,
                     of=record.near_duplicate.content_id, cluster=record.cluster,
                     cosine=record.near_duplicate.cosine)


def rebuilding(app: faust.App, settings: Settings, index: VectorIndex,
               ready: asyncio.Event) -> Any:
    """The partitions-assigned handler of an embedded index: clear it, rebuild it from the
    assigned partitions in the background, and set `ready` when done (crash the worker when
    that fails: never answer from a partial index)."""
    name = settings.topics.embeddings
    rebuilds: set[asyncio.Task[None]] = set()   # referenced until done

    async def on_assigned(_app: Any, /, *args: Any, signal: Any, **_kwargs: Any) -> None:
        partitions = {tp.partition for tp in args[0] if tp.topic == name}
        ready.clear()

        async def run() -> None:
            try:
                index.clear()
                if partitions:
                    await asyncio.to_thread(rebuild, index, settings, partitions)
            except Exception as exc:
                log.error("similarity_index_rebuild_failed", error=repr(exc))
                await app.crash(exc)
                raise
            ready.set()
        task = asyncio.create_task(run())
        rebuilds.add(task)
        task.add_done_callback(rebuilds.discard)

    return on_assigned
