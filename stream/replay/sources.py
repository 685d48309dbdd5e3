"""Where a replay reads: a JSONL file (plain or gzip) or a Kafka topic (kafka-python, no group).

Both cut their input into chunks of ``batch_max_size`` records counted from the start of the range
in each partition, so a batch holds the same records on every run and after every resume from a
checkpoint (checkpoints are written at chunk boundaries). That matters: the int8 encoder's output
depends very slightly on a text's batch mates.

A topic is read with ``assign()`` + ``seek()`` up to the end offsets captured at start; partitions
are interleaved deterministically, the next chunk always coming from the partition whose next
chunk starts with the oldest record timestamp (so windows see roughly time-ordered input).
"""

from __future__ import annotations

import contextlib
import difflib
import itertools
import time
import zlib
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from stream.connectors.jsonl import open_jsonl
from stream.connectors.kafka import consumer
from stream.core.batching import chunks
from stream.core.records import Position, RawMessage
from stream.errors import BrokerError, ConfigError, InputFileError
from stream.replay.plan import SourceSpec, clamp_range, describe_ranges, iso_time
from stream.settings import Settings

Ranges = dict[int, tuple[int, int]]


@dataclass(frozen=True, slots=True)
class SourceBatch:
    partition: int
    messages: list[RawMessage]
    read: int            # records (lines) taken from the source, skipped ones included
    next_position: int   # where this partition continues after the batch

    @property
    def skipped(self) -> int:
        return self.read - len(self.messages)


class Source(Protocol):
    ranges: Ranges

    def batches(self, positions: Mapping[int, int]) -> Iterator[SourceBatch]: ...

    def close(self) -> None: ...


# -- files ------------------------------------------------------------------------------------

def count_lines(path: Path) -> int:
    """Lines in the file (a last line without a newline counts)."""
    count, last = 0, b"\n"
    with _reading(path), open_jsonl(path) as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turns read and decompression errors into an InputFileError that names the file."""
    try:
        yield
    except (OSError, EOFError, zlib.error) as exc:
        raise InputFileError(f"cannot read {path}: {exc}") from exc


class FileSource:
    """JSONL lines as messages: topic = the file name, partition 0, offset = the line number."""

    def __init__(self, path: Path, batch_size: int, ranges: Ranges) -> None:
        self.path, self.batch_size, self.ranges = path, batch_size, ranges

    @classmethod
    def open(cls, spec: SourceSpec, batch_size: int, ranges: Ranges | None) -> FileSource:
        assert spec.file is not None
        if ranges is None:
            lines = count_lines(spec.file)
            ranges = {0: clamp_range(1, lines + 1, spec.from_offset, spec.to_offset)}
            if ranges[0][0] == ranges[0][1]:
                raise ConfigError(f"empty range: {spec.file} has {lines} lines, none of them in "
                                  f"[{spec.from_offset or 1}, {spec.to_offset or lines + 1})")
        return cls(spec.file, batch_size, ranges)

    def batches(self, positions: Mapping[int, int]) -> Iterator[SourceBatch]:
        start, stop = positions[0], self.ranges[0][1]
        with _reading(self.path), open_jsonl(self.path) as handle:
            numbered = zip(itertools.count(start), itertools.islice(handle, start - 1, stop - 1),
                           strict=False)
            for chunk in chunks(numbered, self.batch_size):
                messages = [RawMessage(line.rstrip(b"\r\n"), Position(self.path.name, 0, number))
                            for number, line in chunk if line.strip()]
                start = chunk[-1][0] + 1
                yield SourceBatch(0, messages, len(chunk), start)
        if start < stop:
            raise InputFileError(f"{self.path} ends at line {start - 1}, but this replay covers "
                                 f"lines up to {stop - 1}: the file changed since it started")

    def close(self) -> None:
        return None


# -- topics -----------------------------------------------------------------------------------

def resolve_topic_ranges(client: KafkaConsumer, spec: SourceSpec) -> Ranges:
    """Per partition [start, stop) from offsets or times, within what the broker holds now."""
    assert spec.topic is not None
    try:
        partitions = _partitions(client, spec)
        tps = [TopicPartition(spec.topic, p) for p in partitions]
        begin, end = client.beginning_offsets(tps), client.end_offsets(tps)
        if spec.has_time_range:
            first = _offsets_at(client, tps, spec.from_time_ms, begin)
            last = _offsets_at(client, tps, spec.to_time_ms, end)
            ranges = {tp.partition: (first[tp], max(first[tp], last[tp])) for tp in tps}
        else:
            ranges = {tp.partition: clamp_range(begin[tp], end[tp], spec.from_offset,
                                                spec.to_offset) for tp in tps}
    except KafkaError as exc:
        raise BrokerError(f"reading the offsets of {spec.topic} failed: {exc}") from exc
    if all(start == stop for start, stop in ranges.values()):
        held = describe_ranges({tp.partition: (begin[tp], end[tp]) for tp in tps})
        raise ConfigError(f"empty range: nothing of {spec.topic} is in {_requested(spec)}; "
                          f"the partitions hold offsets {held}")
    return ranges


def _partitions(client: KafkaConsumer, spec: SourceSpec) -> list[int]:
    topic = spec.topic or ""
    topics = client.topics()
    if topic not in topics:
        near = difflib.get_close_matches(topic, sorted(topics), n=1)
        hint = f"; did you mean {near[0]}?" if near else ""
        raise ConfigError(f"unknown topic {topic!r} at the broker{hint}")
    existing = sorted(client.partitions_for_topic(topic) or ())
    missing = sorted(set(spec.partitions or ()) - set(existing))
    if missing:
        raise ConfigError(f"topic {topic} has no partition {missing[0]}; it has {existing}")
    return list(spec.partitions or existing)


def _offsets_at(client: KafkaConsumer, tps: list[TopicPartition], ms: int | None,
                default: Mapping[TopicPartition, int]) -> dict[TopicPartition, int]:
    """The first offset whose timestamp is >= `ms` (the partition's end when there is none)."""
    if ms is None:
        return dict(default)
    found = client.offsets_for_times(dict.fromkeys(tps, ms))
    return {tp: found[tp].offset if found.get(tp) is not None else _end(client, tp)
            for tp in tps}


def _end(client: KafkaConsumer, tp: TopicPartition) -> int:
    offset: int = client.end_offsets([tp])[tp]
    return offset


def _requested(spec: SourceSpec) -> str:
    if spec.has_time_range:
        low = iso_time(spec.from_time_ms) if spec.from_time_ms is not None else "the start"
        high = iso_time(spec.to_time_ms) if spec.to_time_ms is not None else "the end"
        return f"the time range [{low}, {high})"
    low_offset = spec.from_offset if spec.from_offset is not None else "start"
    high_offset = spec.to_offset if spec.to_offset is not None else "end"
    return f"the offset range [{low_offset}, {high_offset})"


def pick_partition(heads: Mapping[int, int | None]) -> int:
    """The partition whose next chunk starts earliest (an empty one first, then by number)."""
    return min(heads, key=lambda p: (-1 if heads[p] is None else heads[p], p))


def chunk_order(partition: int, index: int, latest_start: int) -> tuple[int, int, int]:
    """Where chunk `index` of `partition` comes in the interleaving of `KafkaSource`, as a sort
    key: `latest_start` is the largest first-record timestamp of the partition's chunks up to
    this one. Always taking the partition whose next chunk starts earliest (`pick_partition`)
    merges the partitions in the order of this key: a chunk that starts before the largest start
    so far in its partition is taken right after its predecessor. So an engine that processes
    partitions apart (Spark) can still write, and fold windows, in the local replay's order."""
    return latest_start, partition, index


def in_time_range(spec: SourceSpec, timestamp: int) -> bool:
    """Is a record with this broker timestamp inside the replay's --from-time/--to-time?"""
    low, high = spec.from_time_ms, spec.to_time_ms
    return (low is None or timestamp >= low) and (high is None or timestamp < high)


def topic_message(topic: str, partition: int, offset: int, key: bytes | None,
                  value: bytes | None, timestamp: int | None) -> RawMessage:
    """A topic record as the pipeline's input (a negative timestamp means none)."""
    known = timestamp if timestamp is not None and timestamp >= 0 else None
    return RawMessage(value, Position(topic, partition, offset), key, known)


class KafkaSource:
    """Reads the resolved ranges with one group-less consumer, chunk by chunk."""

    def __init__(self, client: KafkaConsumer, spec: SourceSpec, batch_size: int, ranges: Ranges,
                 idle_timeout_s: float = 30.0) -> None:
        self.client, self.spec, self.ranges = client, spec, ranges
        self.topic = spec.topic or ""
        self.batch_size, self.idle_timeout_s = batch_size, idle_timeout_s

    def batches(self, positions: Mapping[int, int]) -> Iterator[SourceBatch]:
        try:
            yield from self._batches(positions)
        except KafkaError as exc:
            raise BrokerError(f"reading {self.topic} failed: {exc}") from exc

    def _batches(self, positions: Mapping[int, int]) -> Iterator[SourceBatch]:
        active = {p for p, (_, stop) in self.ranges.items() if positions[p] < stop}
        tps = {p: TopicPartition(self.topic, p) for p in active}
        self._check_retained(tps, positions)
        self.client.assign(list(tps.values()))
        for p in active:
            self.client.seek(tps[p], positions[p])
        buffers: dict[int, deque[Any]] = {p: deque() for p in active}
        while active:
            self._fill(buffers, active, tps)
            p = pick_partition({q: buffers[q][0].timestamp if buffers[q] else None
                                for q in active})
            chunk = [buffers[p].popleft() for _ in range(min(self.batch_size, len(buffers[p])))]
            done = not buffers[p] and self._exhausted(tps[p])
            if done:
                active.discard(p)
            yield SourceBatch(p, [self._message(r) for r in chunk if self._in_time(r)],
                              len(chunk), self.ranges[p][1] if done else chunk[-1].offset + 1)

    def _fill(self, buffers: dict[int, deque[Any]], active: set[int],
              tps: dict[int, TopicPartition]) -> None:
        """Poll until every active partition has a full chunk or has reached its stop offset."""
        deadline = time.monotonic() + self.idle_timeout_s
        while waiting := [p for p in active if not self._ready(buffers[p], tps[p])]:
            self.client.pause(*(tps[p] for p in active if p not in waiting))
            self.client.resume(*(tps[p] for p in waiting))
            polled = self.client.poll(timeout_ms=200)
            for tp, records in polled.items():
                stop = self.ranges[tp.partition][1]
                buffers[tp.partition].extend(r for r in records if r.offset < stop)
            if polled:
                deadline = time.monotonic() + self.idle_timeout_s
            elif time.monotonic() > deadline:
                raise BrokerError(f"no records of {self.topic} partitions {waiting} arrived for "
                                  f"{self.idle_timeout_s:.0f} s although their range is not done")

    def _check_retained(self, tps: dict[int, TopicPartition],
                        positions: Mapping[int, int]) -> None:
        """A resumed replay must not jump over records that retention deleted meanwhile."""
        begin = self.client.beginning_offsets(list(tps.values())) if tps else {}
        for p, tp in tps.items():
            if positions[p] < begin[tp]:
                raise BrokerError(
                    f"{self.topic} partition {p}: offsets [{positions[p]}, {begin[tp]}) were "
                    "deleted by retention before this replay read them; start a new replay "
                    "(delete the checkpoint) to replay what is left")

    def _ready(self, buffer: deque[Any], tp: TopicPartition) -> bool:
        return len(buffer) >= self.batch_size or self._exhausted(tp)

    def _exhausted(self, tp: TopicPartition) -> bool:
        position: int = self.client.position(tp)
        return position >= self.ranges[tp.partition][1]

    def _in_time(self, record: Any) -> bool:
        return in_time_range(self.spec, record.timestamp)

    def _message(self, record: Any) -> RawMessage:
        return topic_message(record.topic, record.partition, record.offset, record.key,
                             record.value, record.timestamp)

    def close(self) -> None:
        self.client.close()


def open_source(spec: SourceSpec, settings: Settings, ranges: Ranges | None) -> Source:
    """The file or topic source; `ranges` from a checkpoint, else resolved now."""
    if spec.file is not None:
        return FileSource.open(spec, settings.batch_max_size, ranges)
    client = consumer(settings, client_id=f"{settings.app_id}-replay")
    try:
        if ranges is None:
            ranges = resolve_topic_ranges(client, spec)
        else:
            _partitions(client, spec)   # the topic must still be there
    except BaseException:
        client.close()
        raise
    return KafkaSource(client, spec, settings.batch_max_size, ranges)
