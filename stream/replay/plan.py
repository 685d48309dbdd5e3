"""Replay, the pure part: what to replay (source, range, models, sink) and the replay's identity.

Nothing here talks to Kafka or loads a model. The identity of a replay is a fingerprint of
everything that shapes its output records (source, requested range, model versions and those of
the language tier or a cascade when they serve, batch size, embedding and window options); the
default replay id is derived from it, so the same replay run twice writes byte-identical
records. The sink is not part of it: a replay to a file and the same replay to a topic write the
same records.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from stream.core.topics import BY_ROLE
from stream.errors import ConfigError
from stream.models.manifest import Manifest, load_manifest, parse_task_versions
from stream.replay.state import Checkpoint, load_checkpoint
from stream.settings import Settings

_TOPIC_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """A topic (optionally some partitions) or a JSONL file, and the range to read.

    Offsets are inclusive-from, exclusive-to; for a file they are 1-based line numbers. Times are
    epoch ms, compared with the broker's record timestamps (inclusive-from, exclusive-to).
    """

    topic: str | None = None
    file: Path | None = None
    partitions: tuple[int, ...] | None = None
    from_offset: int | None = None
    to_offset: int | None = None
    from_time_ms: int | None = None
    to_time_ms: int | None = None

    @property
    def name(self) -> str:
        """The topic, or the file's name (what a file record's ``source.topic`` says)."""
        if self.topic is not None:
            return self.topic
        return self.file.name if self.file is not None else ""

    @property
    def has_time_range(self) -> bool:
        return self.from_time_ms is not None or self.to_time_ms is not None

    def check(self) -> None:
        """Raise ConfigError for a source or range that cannot be right, before any I/O."""
        if (self.topic is None) == (self.file is None):
            raise ConfigError("give exactly one source: --topic NAME or --file PATH")
        has_offsets = self.from_offset is not None or self.to_offset is not None
        if has_offsets and self.has_time_range:
            raise ConfigError("use either --from-offset/--to-offset or --from-time/--to-time, "
                              "not both")
        if self.file is not None and self.has_time_range:
            raise ConfigError("--from-time/--to-time need a topic (a file has no broker "
                              "timestamps); select lines with --from-offset/--to-offset")
        if self.file is not None and self.partitions is not None:
            raise ConfigError("--partitions applies to a topic source, not to a file")
        if self.file is not None and self.from_offset is not None and self.from_offset < 1:
            raise ConfigError("--from-offset of a file is a line number, starting at 1")
        _check_order(self.from_offset, self.to_offset, "--from-offset", "--to-offset", str)
        _check_order(self.from_time_ms, self.to_time_ms, "--from-time", "--to-time", iso_time)

    def identity(self) -> dict[str, Any]:
        data = asdict(self)
        data["file"] = str(self.file.resolve()) if self.file is not None else None
        return data


def _check_order(low: int | None, high: int | None, low_flag: str, high_flag: str,
                 show: Any) -> None:
    if low is None or high is None:
        return
    if low > high:
        raise ConfigError(f"{low_flag} {show(low)} is after {high_flag} {show(high)}")
    if low == high:
        raise ConfigError(f"empty range: {low_flag} equals {high_flag} ({show(low)}); "
                          f"{high_flag} is exclusive")


@dataclass(frozen=True, slots=True)
class SinkSpec:
    """A JSONL file (with ``.dlq``/``.windows`` siblings), or topics: replay topics by default."""

    output: Path | None = None
    to_live: bool = False

    def check(self, source: SourceSpec) -> None:
        if self.output is not None and self.to_live:
            raise ConfigError("--to-live writes to the live topics; it cannot go with --output")
        if self.output is not None and source.file is not None and \
                self.output.resolve() == source.file.resolve():
            raise ConfigError(f"--output {self.output} is the input file")


@dataclass(frozen=True, slots=True)
class ReplayRequest:
    """Everything `signals replay` was asked to do."""

    source: SourceSpec
    sink: SinkSpec = SinkSpec()
    models: Mapping[str, str] = field(default_factory=dict)
    aggregate: bool = False
    replay_id: str | None = None
    checkpoint: Path | None = None
    rate: float | None = None
    dry_run: bool = False
    progress: bool = True
    index: bool = False    # also upsert every item's vector into the shared similarity index


@dataclass(frozen=True, slots=True)
class ReplayTopics:
    signals: str
    dlq: str
    windows: str


def parse_time(text: str) -> int:
    """ISO-8601 with an explicit offset (``2026-01-05T10:00:00Z``) → epoch milliseconds."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO-8601 time such as 2026-01-05T10:00:00Z") \
            from None
    if parsed.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset; add Z or +hh:mm")
    return int(parsed.timestamp() * 1000)


def iso_time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def parse_partitions(text: str) -> tuple[int, ...]:
    """``0,1,3`` → (0, 1, 3): distinct, sorted, each >= 0."""
    try:
        values = {int(part) for part in text.split(",") if part.strip()}
    except ValueError:
        raise ValueError(f"{text!r} is not a comma-separated list of partitions") from None
    if not values or min(values) < 0:
        raise ValueError(f"{text!r}: partitions are numbers from 0, e.g. 0,1")
    return tuple(sorted(values))


def parse_model_overrides(items: Iterable[str]) -> dict[str, str]:
    """``["embedding=v2", ...]`` → {task: version} (the manifest check comes later)."""
    return parse_task_versions(items, "--model")


def resolve_versions(manifest: Manifest, overrides: Mapping[str, str]) -> dict[str, str]:
    """Task → version for every active task, with `overrides`; unknown names are errors. A head
    not named runs the version trained on the chosen encoder (`Manifest.resolve_beside`)."""
    unknown = sorted(set(overrides) - set(manifest.active))
    if unknown:
        raise ConfigError(f"unknown model task {unknown[0]!r}; {manifest.path} has tasks "
                          f"{sorted(manifest.active)}")
    encoder = manifest.resolve("embedding", overrides.get("embedding")).version
    return {task: encoder if task == "embedding" else
            manifest.resolve_beside(task, overrides.get(task), encoder).version
            for task in manifest.active}


def shaping_options(settings: Settings, aggregate: bool) -> dict[str, Any]:
    """The settings that change output records (beyond source and models)."""
    options: dict[str, Any] = {
        "batch_max_size": settings.batch_max_size,
        "encoder_bucket_size": settings.encoder_bucket_size,
        "include_embedding": settings.include_embedding,
        "max_event_bytes": settings.max_event_bytes, "aggregate": aggregate,
    }
    if aggregate:
        options |= {"tumbling_window_s": settings.tumbling_window_s,
                    "hopping_window_s": settings.hopping_window_s,
                    "hopping_step_s": settings.hopping_step_s,
                    "window_grace_s": settings.window_grace_s, "partitions": settings.partitions}
    return options


def fingerprint(source: SourceSpec, versions: Mapping[str, str],
                options: Mapping[str, Any]) -> str:
    """sha256 of everything that shapes the replay's records (canonical JSON)."""
    data = {"source": source.identity(), "models": dict(versions), "options": dict(options)}
    return hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()


def default_replay_id(fingerprint_hex: str) -> str:
    return f"replay-{fingerprint_hex[:16]}"


def version_tag(versions: Mapping[str, str]) -> str:
    """``<embedding version>-<8 hex of all versions>``, safe as part of a topic name."""
    digest = hashlib.sha256(orjson.dumps(dict(versions), option=orjson.OPT_SORT_KEYS))
    lead = versions.get("embedding") or "models"
    return f"{_TOPIC_UNSAFE.sub('_', lead)}-{digest.hexdigest()[:8]}"


def replay_topics(settings: Settings, versions: Mapping[str, str], to_live: bool) -> ReplayTopics:
    """The live topics with `to_live`, otherwise versioned replay topics (with the prefix)."""
    if to_live:
        live = settings.topics
        return ReplayTopics(live.signals, live.dlq, live.windows)
    tag, prefix = version_tag(versions), settings.topic_prefix
    return ReplayTopics(*(f"{prefix}{BY_ROLE[role].replay_stem}{tag}"
                          for role in ("signals", "dlq", "windows")))


def clamp_range(begin: int, end: int, from_offset: int | None,
                to_offset: int | None) -> tuple[int, int]:
    """The requested [from, to) within what the partition holds, [begin, end); maybe empty."""
    start = begin if from_offset is None else min(max(from_offset, begin), end)
    stop = end if to_offset is None else min(max(to_offset, begin), end)
    return start, max(start, stop)


def describe_ranges(ranges: Mapping[int, tuple[int, int]]) -> str:
    return ", ".join(f"{p}:[{start},{stop})" for p, (start, stop) in sorted(ranges.items()))


@dataclass(frozen=True, slots=True)
class Plan:
    """A checked request: resolved model versions, the replay's identity, its sink."""

    request: ReplayRequest
    settings: Settings
    versions: dict[str, str]
    fingerprint: str
    replay_id: str
    topics: ReplayTopics | None
    sink_name: str
    checkpoint: Checkpoint | None


def plan_replay(request: ReplayRequest, settings: Settings) -> Plan:
    """Every check that needs no broker and no model file: fails fast on bad arguments."""
    request.source.check()
    request.sink.check(request.source)
    check_index(request, settings)
    manifest = load_manifest(settings.manifest_path)
    versions = resolve_versions(manifest, {**manifest.profile(settings.profile), **request.models})
    options = shaping_options(settings, request.aggregate)
    tier = manifest.tier_versions(versions["embedding"], settings.language_tier)
    if tier:             # the tier serves some items: its models shape their records
        options |= {"language_tier": tier}
    cascade = manifest.cascade(settings.profile, versions["embedding"])
    if cascade is not None:   # so do a cascade's
        options |= {"cascade": {"encoder": cascade.encoder,
                                "min_confidence": cascade.min_confidence}}
    if request.index:    # a checkpoint of a replay without the index must not resume into one
        options |= {"index": settings.similarity_table}
    digest = fingerprint(request.source, versions, options)
    replay_id = request.replay_id or default_replay_id(digest)
    tagged = {**versions, **{f"language_tier.{task}": v for task, v in tier.items()}}
    topics = None if request.sink.output else replay_topics(settings, tagged,
                                                            request.sink.to_live)
    if topics is not None and request.source.topic in (topics.signals, topics.dlq, topics.windows):
        raise ConfigError(f"the source topic {request.source.topic} is also a sink topic")
    sink_name = (f"file {request.sink.output.resolve()}" if request.sink.output else
                 "topics " + ", ".join(_topic_names(topics, request.aggregate)))
    checkpoint = None
    if request.checkpoint is not None and not request.dry_run:
        checkpoint = load_checkpoint(request.checkpoint)
        if checkpoint is not None:
            checkpoint.ensure_matches(request.checkpoint, digest, replay_id, sink_name)
    return Plan(request, settings, versions, digest, replay_id, topics, sink_name, checkpoint)


def check_index(request: ReplayRequest, settings: Settings) -> None:
    """``--index`` rebuilds a durable index: PostgreSQL, not an embedded one."""
    if not request.index:
        return
    if request.dry_run:
        raise ConfigError("--index writes vectors; --dry-run writes nothing: drop one of them")
    if settings.similarity_index != "pgvector":
        raise ConfigError(
            f"--index rebuilds the shared index, and SIGNALS_SIMILARITY_INDEX is "
            f"{settings.similarity_index!r}: set it to pgvector with SIGNALS_SIMILARITY_DSN (an "
            "embedded index is rebuilt from content.embeddings.v1 when a worker starts)")


def _topic_names(topics: ReplayTopics | None, aggregate: bool) -> list[str]:
    if topics is None:
        return []
    return [topics.signals, topics.dlq] + ([topics.windows] if aggregate else [])
