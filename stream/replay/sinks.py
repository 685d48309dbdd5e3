"""Where a replay writes: Kafka topics (kafka-python), JSONL files, or nowhere (a dry run).

Each sink takes one batch's records with `write` and makes them durable with `commit`, which the
replay calls before it writes its checkpoint. `commit` returns the sink's state for the checkpoint:
a file sink returns its files' sizes and, on resume, truncates the files to them, so a file
replay resumed after any interruption is byte-identical to an uninterrupted one. A topic cannot be
truncated: records of a batch that was produced but not checkpointed are produced again on resume
(with the same keys and values, so consumers can compact or deduplicate them).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from kafka.errors import KafkaError

from stream.connectors.kafka import admin_client, create_topics, producer
from stream.core.outputs import Record, serialise
from stream.errors import BrokerError, ConfigError
from stream.replay.plan import ReplayTopics
from stream.settings import Settings

KINDS = ("signals", "dead_letters", "windows")


@dataclass(slots=True)
class Outputs:
    """What one step of a replay writes, by kind (typed records; the sinks serialise)."""

    signals: Sequence[Record] = field(default_factory=list)
    dead_letters: Sequence[Record] = field(default_factory=list)
    windows: Sequence[Record] = field(default_factory=list)

    def by_kind(self) -> dict[str, Sequence[Record]]:
        return {"signals": self.signals, "dead_letters": self.dead_letters,
                "windows": self.windows}


class ReplaySink(Protocol):
    description: str

    def write(self, outputs: Outputs) -> None: ...

    def commit(self) -> dict[str, int]: ...

    def close(self) -> None: ...


class NullSink:
    """A dry run's sink: keeps nothing."""

    description = "nothing (dry run)"

    def write(self, outputs: Outputs) -> None:
        return None

    def commit(self) -> dict[str, int]:
        return {}

    def close(self) -> None:
        return None


def output_paths(path: Path) -> dict[str, Path]:
    """``out.jsonl`` → signals in it, dead letters in ``out.dlq.jsonl``, windows in
    ``out.windows.jsonl``."""
    return {"signals": path, "dead_letters": path.with_name(f"{path.stem}.dlq{path.suffix}"),
            "windows": path.with_name(f"{path.stem}.windows{path.suffix}")}


def check_output(path: Path) -> None:
    if path.suffix == ".gz":
        raise ConfigError(f"--output {path}: compressed output is not supported; write "
                          "plain JSONL and compress it afterwards")


class FileSink:
    """One JSON value per line, exactly the bytes a topic sink would produce as the value."""

    def __init__(self, path: Path, *, windows: bool, resume: Mapping[str, int] | None) -> None:
        check_output(path)
        self.description = f"file {path}"
        kinds = KINDS if windows else KINDS[:2]
        paths = output_paths(path)
        self.handles: dict[str, IO[bytes]] = {}
        try:
            for kind in kinds:
                self.handles[kind] = _open_output(paths[kind], None if resume is None
                                                  else resume.get(kind, 0))
        except BaseException:
            self.close()
            raise

    def write(self, outputs: Outputs) -> None:
        for kind, records in outputs.by_kind().items():
            if records:
                self.handles[kind].write(b"".join((serialise(r).value or b"") + b"\n"
                                                   for r in records))

    def commit(self) -> dict[str, int]:
        for handle in self.handles.values():
            handle.flush()
            os.fsync(handle.fileno())
        return {kind: handle.tell() for kind, handle in self.handles.items()}

    def close(self) -> None:
        for handle in self.handles.values():
            handle.close()


def _open_output(path: Path, size: int | None) -> IO[bytes]:
    """A new file (`size` None), or the file cut back to the `size` the checkpoint recorded."""
    try:
        if size is None:
            return path.open("wb")
        if not path.exists() or path.stat().st_size < size:
            raise ConfigError(f"{path} is missing or shorter than the {size} bytes the "
                              "checkpoint records; delete the checkpoint to replay from the start")
        os.truncate(path, size)
        return path.open("ab")
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from exc


class KafkaSink:
    """Produces keyed records (acks=all) and waits for every one of them in `commit`."""

    def __init__(self, settings: Settings, topics: ReplayTopics, *, windows: bool) -> None:
        names = [topics.signals, topics.dlq] + ([topics.windows] if windows else [])
        ensure_sink_topics(settings, names, dead_letters=topics.dlq)
        self.topics = dict(zip(KINDS, names, strict=False))
        self.description = "topics " + ", ".join(names)
        self.client = producer(settings, client_id=f"{settings.app_id}-replay")
        self.pending: list[tuple[str, Any]] = []

    def write(self, outputs: Outputs) -> None:
        for kind, records in outputs.by_kind().items():
            topic = self.topics.get(kind, "")
            for record in map(serialise, records):
                try:
                    future = self.client.send(topic, key=record.key, value=record.value)
                except KafkaError as exc:   # e.g. a record over the producer's size limit
                    raise BrokerError(f"producing to {topic} failed: {exc}") from exc
                self.pending.append((topic, future))

    def commit(self) -> dict[str, int]:
        try:
            self.client.flush(timeout=60)
            for _, future in self.pending:
                future.get(timeout=30)
        except KafkaError as exc:
            topic = next((t for t, f in self.pending if f.is_done and f.failed()), "a topic")
            raise BrokerError(f"producing to {topic} failed: {exc}") from exc
        finally:
            self.pending = []
        return {}

    def close(self) -> None:
        self.client.close(timeout=10)


def ensure_sink_topics(settings: Settings, names: list[str], dead_letters: str) -> list[str]:
    """Create the missing sink topics with the configured partitions; return the new ones."""
    admin = admin_client(settings)
    try:
        existing = set(admin.list_topics())
        missing = [n for n in names if n not in existing]
        create_topics(admin, settings, missing, dead_letters=dead_letters)
        return missing
    except KafkaError as exc:
        raise BrokerError(f"creating the sink topics {names} failed: {exc}") from exc
    finally:
        admin.close()
