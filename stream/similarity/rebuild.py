"""Rebuilding an embedded index from the compacted ``content.embeddings.v1``, the way a Faust table
recovers from its changelog.

The topic keeps the latest record of every content id (compaction) and a null value for a deleted
one (a tombstone, until compaction drops it), so reading it from the beginning and applying each
record in order — upsert or delete — gives the index as it stood at the last offset read. It is
read with ``assign()`` + ``seek()``, never a consumer group, up to offsets fixed before reading.

Clusters (`stream.similarity.signals.cluster_of`) are not in the topic: the index stage derives
them. A rebuild derives them again: the latest record of each item is kept (deletions applied, in
offset order per partition), then the items are indexed in event-time order with the same
query-then-upsert step as the live stage, so a copy finds the cluster of the earlier item it
copies whatever partition either came from. One k=1 query per item (a rebuild costs about what
the live stage spent on those items), and the latest records are held in memory until the end
offsets are read (about the size of the index again, briefly). An item that the live stage saw
before an earlier-dated one (out-of-order arrival) may now join that one's cluster: the rebuild
answers what a stream in event-time order would have.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Iterator

import structlog
from kafka import TopicPartition

from stream.connectors.kafka import consumer
from stream.core.outputs import EmbeddingRecord
from stream.settings import Settings
from stream.similarity.calibration import shipped_threshold
from stream.similarity.index import VectorIndex
from stream.similarity.signals import index_item

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


def latest(records: Iterable[EmbeddingRecord]) -> dict[str, EmbeddingRecord]:
    """The latest record of each item that is not deleted (records in offset order per key)."""
    items: dict[str, EmbeddingRecord] = {}
    for record in records:
        if record.vector is None:
            items.pop(record.content_id, None)
        else:
            items[record.content_id] = record
    return items


def apply_all(index: VectorIndex, records: Iterable[EmbeddingRecord], threshold: float) -> None:
    """Index the surviving items in event-time order, each with its cluster."""
    items = latest(records)
    for cid in sorted(items, key=lambda c: (items[c].event_time_ms, c)):
        index_item(index, items[cid], threshold)


def rebuild(index: VectorIndex, settings: Settings,
            partitions: Collection[int] | None = None) -> int:
    """Apply the topic (those `partitions`, default all) to `index`; returns the records read."""
    count = 0
    started = time.monotonic()

    def counted() -> Iterator[EmbeddingRecord]:
        nonlocal count
        for _, record in read_embeddings(settings, partitions):
            count += 1
            yield record

    apply_all(index, counted(), shipped_threshold(settings))
    log.info("similarity_index_rebuilt", records=count, items=len(index), kind=index.kind,
             partitions=sorted(partitions) if partitions is not None else "all",
             seconds=round(time.monotonic() - started, 3))
    return count
