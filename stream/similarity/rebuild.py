"""Rebuilding an embedded index from the compacted ``content.embeddings.v1``, the way a Faust table
recovers from its changelog.

The topic keeps the latest record of every content id (compaction) and a null value for a deleted
one (a tombstone, until compaction drops it), so reading it from the beginning and applying each
record in order — upsert or delete — gives the index as it stood at the last offset read. It is
read with ``assign()`` + ``seek()``, never a consumer group, up to offsets fixed before reading.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterator

import structlog
from kafka import TopicPartition

from stream.connectors.kafka import consumer
from stream.core.outputs import EmbeddingRecord
from stream.settings import Settings
from stream.similarity.index import ItemInfo, VectorIndex

log = structlog.get_logger("stream.similarity.rebuild")


def read_embeddings(settings: Settings, partitions: Collection[int] | None = None,
                    idle_timeout_s: float = 10.0) -> Iterator[tuple[int, EmbeddingRecord]]:
    """(partition, record) of ``content.embeddings.v1`` from the beginning to the end offsets
    of the moment, for `partitions` (default: all)."""
    topic = settings.topics.embeddings
    client = consumer(settings)   # no group: nothing is committed
    try:
        known = client.partitions_for_topic(topic) or set()
        wanted = [TopicPartition(topic, p) for p in sorted(known)
                  if partitions is None or p in partitions]
        if not wanted:
            return
        stop = {tp.partition: end for tp, end in client.end_offsets(wanted).items()}
        client.assign(wanted)
        client.seek_to_beginning(*wanted)
        open_parts = {p for p, end in stop.items()
                      if end > client.position(TopicPartition(topic, p))}
        last = time.monotonic()
        while open_parts and time.monotonic() - last < idle_timeout_s:
            for tp, records in client.poll(timeout_ms=500).items():
                for record in records:
                    if record.offset >= stop[tp.partition]:
                        open_parts.discard(tp.partition)
                        break
                    last = time.monotonic()
                    yield tp.partition, EmbeddingRecord.from_message(record.key, record.value)
                if client.position(tp) >= stop[tp.partition]:
                    open_parts.discard(tp.partition)
    finally:
        client.close()


def apply(index: VectorIndex, record: EmbeddingRecord) -> None:
    if record.vector is None:
        index.delete(record.content_id)
    else:
        index.upsert(record.content_id, record.vector, ItemInfo(
            record.content_type, record.event_time_ms, record.event_id, record.creator_id,
            record.show_id))


def rebuild(index: VectorIndex, settings: Settings,
            partitions: Collection[int] | None = None) -> int:
    """Apply the topic (those `partitions`, default all) to `index`; returns the records read."""
    count = 0
    started = time.monotonic()
    for _, record in read_embeddings(settings, partitions):
        apply(index, record)
        count += 1
    log.info("similarity_index_rebuilt", records=count, items=len(index), kind=index.kind,
             partitions=sorted(partitions) if partitions is not None else "all",
             seconds=round(time.monotonic() - started, 3))
    return count
