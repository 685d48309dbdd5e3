"""`signals replay`: reprocess history through the live worker's code path, safely.

    source (topic range or JSONL file) → chunks → `process_batch` → [windows] → sink → checkpoint

The pipeline is `stream.core.builder.build_pipeline` with the chosen model versions and the replay
id as its ``run_id``, and with wall-clock fields left out, so a repeated replay writes
byte-identical
records. Per batch: rate limit, process, write, flush, then the checkpoint (atomically). The first
Ctrl-C (or SIGTERM) lets the current batch finish and be checkpointed, then stops; a second one
abandons the batch at once (the checkpoint still marks the last finished batch). The pure parts
live in `stream.replay.plan` and `stream.replay.state`, the I/O in `stream.replay.sources` and
`stream.replay.sinks`.
"""

from __future__ import annotations

import signal
import sys
import time
from dataclasses import dataclass, field, replace
from typing import Any, TextIO

from kafka.partitioner.default import murmur2
from tqdm import tqdm

from stream.core.builder import build_pipeline
from stream.core.outputs import EmbeddingRecord, EnrichedRecord, WindowRecord
from stream.core.pipeline import Pipeline, process_batch
from stream.core.records import RawMessage
from stream.core.validate import Validator, make_validator
from stream.errors import Rejection
from stream.replay.control import StopRequest, TokenBucket, wait_unless_stopped
from stream.replay.plan import (
    Plan,
    ReplayRequest,
    describe_ranges,
    plan_replay,
)
from stream.replay.sinks import FileSink, KafkaSink, NullSink, Outputs, ReplaySink
from stream.replay.sources import Ranges, Source, SourceBatch, open_source
from stream.replay.state import Checkpoint, ReplayCounts, save_checkpoint
from stream.settings import Settings
from stream.similarity.calibration import shipped_threshold
from stream.similarity.kinds import open_index
from stream.similarity.signals import index_batch
from stream.windows.aggregator import WindowAggregator
from stream.windows.kinds import window_kinds


@dataclass(slots=True)
class ReplayResult:
    replay_id: str
    sink: str
    counts: ReplayCounts
    session: ReplayCounts
    elapsed_s: float
    interrupted: bool = False
    exit_code: int = 0
    already_complete: bool = False


def run_replay(request: ReplayRequest, settings: Settings, *, out: TextIO | None = None,
               err: TextIO | None = None) -> ReplayResult:
    """Plan, open the source, process every batch into the sink; print a header and a summary."""
    out, err = out or sys.stdout, err or sys.stderr
    plan = plan_replay(request, settings)
    source = open_source(request.source, settings,
                         plan.checkpoint.ranges if plan.checkpoint else None)
    try:
        state = plan.checkpoint or new_state(plan, source.ranges)
        print(header(plan, state), file=out, flush=True)
        if state.finished:
            print(f"already complete according to {request.checkpoint}; delete it to replay "
                  "again", file=out)
            return ReplayResult(plan.replay_id, plan.sink_name, state.counts, ReplayCounts(), 0.0,
                                already_complete=True)
        result = _Run(plan, source, state, err).execute()
    finally:
        source.close()
    print(summary(result, plan, state), file=out, flush=True)
    return result


def new_state(plan: Plan, ranges: Ranges) -> Checkpoint:
    return Checkpoint(plan.fingerprint, plan.replay_id, plan.sink_name, dict(ranges),
                      {p: start for p, (start, _) in ranges.items()},
                      windows={} if plan.request.aggregate and not plan.request.dry_run else None)


def header(plan: Plan, state: Checkpoint) -> str:
    source = plan.request.source
    kind = f"topic {source.topic}" if source.topic is not None else f"file {source.file}"
    unit = "offsets" if source.topic is not None else "lines"
    resumed = (f"; resuming at {describe_ranges(state.remaining())}"
               if plan.checkpoint is not None else "")
    target = "nothing (dry run)" if plan.request.dry_run else plan.sink_name
    models = ", ".join(f"{task}={version}" for task, version in sorted(plan.versions.items()))
    return (f"replay {plan.replay_id}: {kind}, {unit} {describe_ranges(state.ranges)}{resumed} "
            f"→ {target}; models {models}")


def replay_pipeline(plan: Plan, **changes: Any) -> Pipeline:
    """The worker's pipeline with the replay's model versions and its replay id as run id, without
    wall-clock fields. Challengers are not replayed: their shadow records are not written.
    `changes` are settings that do not change records (the Spark engine's ``model_threads``)."""
    loaded = build_pipeline(plan.settings.replace(challengers="", **changes),
                            versions=plan.versions, run_id=plan.replay_id)
    return replace(loaded, include_processing=False)


class ReplayWindows:
    """A replay's windows: enriched records folded as the aggregate agent folds them (their JSON
    value, by the worker's `WindowAggregator`) under the partition of ``content.enriched.v1`` that
    the worker's producer gives their group; closed windows carry the replay id and models."""

    def __init__(self, plan: Plan, store: dict[str, Any]) -> None:
        settings = plan.settings
        self.aggregator = WindowAggregator(store, window_kinds(settings),
                                           settings.window_grace_s * 1000)
        self.partitions = settings.partitions
        self.stamp = {"replay_id": plan.replay_id, "models": plan.versions}

    def partition_of(self, record: EnrichedRecord) -> int:
        return group_partition(record.key, self.partitions)

    def fold(self, group: str, value: dict[str, Any], partition: int) -> list[WindowRecord]:
        """One enriched record's JSON value in; the windows it closed out."""
        return [self._window(w) for w in self.aggregator.update(group, value, partition)]

    def flush(self) -> list[WindowRecord]:
        """Close every open window (the input is finite), partition by partition."""
        return [self._window(w) for w in self.aggregator.flush()]

    def _window(self, window: dict[str, Any]) -> WindowRecord:
        return WindowRecord({**window, **self.stamp})


class Processor:
    """One batch of messages → the records to write, through the worker's `process_batch`."""

    def __init__(self, plan: Plan, windows_store: dict[str, Any] | None) -> None:
        self.pipeline: Pipeline | None = None
        if plan.request.dry_run:
            self.validate: Validator = make_validator(plan.settings.schemas_dir,
                                                      plan.settings.max_event_bytes)
        else:
            self.pipeline = replay_pipeline(plan)
            self.validate = self.pipeline.validate
        self.windows = ReplayWindows(plan, windows_store) if windows_store is not None else None
        self.index = open_index(plan.settings) if plan.request.index else None
        self.threshold = (shipped_threshold(plan.settings, plan.versions.get("embedding"))
                          if self.index is not None else 0.0)
        self.settings = plan.settings

    def process(self, messages: list[RawMessage]) -> tuple[Outputs, ReplayCounts]:
        if self.pipeline is None:    # a dry run validates and counts
            valid = sum(not isinstance(self.validate(m.value), Rejection) for m in messages)
            return Outputs(), ReplayCounts(signals=valid, dead_letters=len(messages) - valid)
        output = process_batch(self.pipeline, messages)
        windows = self._aggregate(output.enriched)
        indexed = self._index(output.embeddings)
        return (Outputs(output.signals, output.dead_letters, windows),
                ReplayCounts(signals=len(output.signals), dead_letters=len(output.dead_letters),
                             windows=len(windows), indexed=indexed))

    def close(self) -> None:
        if self.index is not None:
            self.index.close()

    def _index(self, embeddings: list[EmbeddingRecord]) -> int:
        """The index stage's own step (`index_batch`) on this batch's vectors and tombstones:
        upserts by content id, so re-applying a batch (a resumed run) changes nothing."""
        if self.index is None:
            return 0
        index_batch(self.index, embeddings, threshold=self.threshold,
                    related_k=0)
        return len(embeddings)

    def flush(self) -> Outputs:
        """Close every open window (the input is finite)."""
        return Outputs(windows=self.windows.flush() if self.windows is not None else [])

    def _aggregate(self, enriched: list[EnrichedRecord]) -> list[WindowRecord]:
        if self.windows is None:
            return []
        closed: list[WindowRecord] = []
        for record in enriched:
            closed += self.windows.fold(record.group, record.to_json(),
                                        self.windows.partition_of(record))
        return closed


def group_partition(key: bytes, partitions: int) -> int:
    """The partition of ``content.enriched.v1`` the worker's producer picks for `key` (murmur2),
    so replay windows keep one stream time per partition exactly like the live aggregation."""
    return (int(murmur2(key)) & 0x7FFFFFFF) % partitions


@dataclass
class _Run:
    """The loop over one replay's batches, with its sink, progress bar, limiter and counters."""

    plan: Plan
    source: Source
    state: Checkpoint
    err: TextIO
    session: ReplayCounts = field(default_factory=ReplayCounts)
    interrupted: bool = False

    def execute(self) -> ReplayResult:
        sink = _open_sink(self.plan, self.state)
        try:
            processor = Processor(self.plan, self.state.windows)
        except BaseException:
            sink.close()
            raise
        started = time.monotonic()   # after loading the models: the rate is the replay's own
        stop = StopRequest(self.err)
        limiter = TokenBucket.per_second(self.plan.request.rate) if self.plan.request.rate else None
        bar = self._progress_bar()
        try:
            with stop.installed():
                self._loop(processor, sink, stop, limiter, bar)
                if not self.interrupted:
                    closing = processor.flush()
                    self._commit(sink, closing, ReplayCounts(windows=len(closing.windows)),
                                 finished=True)
        finally:
            bar.close()
            sink.close()
            processor.close()
        code = 128 + (stop.signum or signal.SIGINT) if self.interrupted else 0
        return ReplayResult(self.plan.replay_id, sink.description, self.state.counts,
                            self.session, time.monotonic() - started, self.interrupted, code)

    def _loop(self, processor: Processor, sink: ReplaySink, stop: StopRequest,
              limiter: TokenBucket | None, bar: Any) -> None:
        try:
            for batch in self.source.batches(dict(self.state.positions)):
                delay = limiter.delay(batch.read, time.monotonic()) if limiter else 0.0
                if not wait_unless_stopped(delay, stop):
                    break
                outputs, counts = processor.process(batch.messages)
                counts.read, counts.skipped = batch.read, batch.skipped
                advance = batch.next_position - self.state.positions[batch.partition]
                self._commit(sink, outputs, counts, batch)
                bar.update(advance)
                if stop.requested:
                    break
        except KeyboardInterrupt:    # a second Ctrl-C: the batch in flight is abandoned
            self.interrupted = True
        # A stop that came with the last batch leaves nothing to resume: finish normally.
        self.interrupted = self.interrupted or (stop.requested and not self.state.read_all)

    def _commit(self, sink: ReplaySink, outputs: Outputs, counts: ReplayCounts,
                batch: SourceBatch | None = None, finished: bool = False) -> None:
        """Write and flush the batch's records, then move the checkpoint past them."""
        sink.write(outputs)
        self.state.sink_state = sink.commit()
        if batch is not None:
            self.state.positions[batch.partition] = batch.next_position
        self.state.counts.add(counts)
        self.session.add(counts)
        self.state.finished = finished
        if self.plan.request.checkpoint is not None and not self.plan.request.dry_run:
            save_checkpoint(self.plan.request.checkpoint, self.state)

    def _progress_bar(self) -> Any:
        ranges = self.state.ranges
        total = sum(stop - start for start, stop in ranges.values())
        done = sum(self.state.positions[p] - start for p, (start, _) in ranges.items())
        enabled = self.plan.request.progress and self.err.isatty()
        return tqdm(total=total, initial=done, unit="ev", unit_scale=True, file=self.err,
                    disable=not enabled, dynamic_ncols=True, mininterval=0.5,
                    desc="replay", smoothing=0.1)


def _open_sink(plan: Plan, state: Checkpoint) -> ReplaySink:
    request = plan.request
    if request.dry_run:
        return NullSink()
    if request.sink.output is not None:
        resume = state.sink_state if plan.checkpoint is not None else None
        return FileSink(request.sink.output, windows=request.aggregate, resume=resume)
    assert plan.topics is not None
    return KafkaSink(plan.settings, plan.topics, windows=request.aggregate)


def summary(result: ReplayResult, plan: Plan, state: Checkpoint) -> str:
    """The last line(s) a replay prints: totals, rate, and how to resume an interrupted one."""
    c = result.counts
    rate = result.session.read / result.elapsed_s if result.elapsed_s > 0 else 0.0
    if plan.request.dry_run:
        line = (f"dry run {plan.replay_id}: read {c.read}, valid {c.signals}, invalid "
                f"{c.dead_letters} (would be dead-lettered), skipped {c.skipped}; nothing was "
                "produced")
    else:
        windows = f", windows {c.windows}" if plan.request.aggregate else ""
        indexed = f", indexed {c.indexed}" if plan.request.index else ""
        line = (f"replay {plan.replay_id}: read {c.read}, produced {c.signals}, dead-lettered "
                f"{c.dead_letters}, skipped {c.skipped}{windows}{indexed} → {result.sink}")
    line += f" ({result.elapsed_s:.1f} s, {rate:.1f} events/s)"
    if result.interrupted:
        at = describe_ranges(state.remaining())
        how = (f"run the same command to resume from {plan.request.checkpoint}"
               if plan.request.checkpoint is not None and not plan.request.dry_run
               else "no --checkpoint was given, so a new run starts from the beginning")
        line += f"\ninterrupted; left to do: {at}; {how}"
    return line
