"""The records the worker, replay and the window folds write on the golden set, pinned byte for
byte (``processing`` and ``failed_at``, the wall-clock fields, aside).

A refactoring must leave every digest in tests/golden/records.sha256.json unchanged. After an
intended change of models or record shapes, rewrite the file with ``make golden-records`` and say
why in the commit.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from stream.core.outputs import Record, serialise
from stream.core.pipeline import Pipeline, process_batch
from stream.core.records import Position, RawMessage
from stream.replay.plan import ReplayRequest, SinkSpec, SourceSpec
from stream.replay.run import run_replay
from stream.replay.sinks import output_paths
from stream.settings import Settings
from stream.windows.aggregator import WindowAggregator
from stream.windows.kinds import window_kinds

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
DIGESTS = GOLDEN / "records.sha256.json"
BATCH = 16


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def keyed_sha(record: Record) -> str:
    """The digest of what a sink writes for `record`: its key and value bytes."""
    out = serialise(record)
    return sha(out.key + b"\0" + out.value)


def golden_events(tmp_path: Path) -> Path:
    """The golden events as the worker would see them: without their ``expected`` labels."""
    rows = [orjson.loads(line) for line in (GOLDEN / "events.jsonl").read_bytes().splitlines()]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps({k: v for k, v in row.items() if k != "expected"})
                              + b"\n" for row in rows))
    return path


def worker_records(pipeline: Pipeline, settings: Settings,
                   events: Path) -> dict[str, list[str]]:
    """What the enrich agent sends, batch by batch, and what the aggregate agent folds from it."""
    lines = events.read_bytes().splitlines()
    lines += [b'{"event_id": "broken", ', b'{"event_id": "x"}']   # two dead letters
    messages = [RawMessage(line, Position("content.events.v1", 0, i), key=None,
                           timestamp_ms=None) for i, line in enumerate(lines)]
    quiet = replace(pipeline, include_processing=False)
    out: dict[str, list[str]] = {"signals": [], "enriched": [], "dead_letters": [], "windows": []}
    aggregator = WindowAggregator({}, window_kinds(settings), settings.window_grace_s * 1000)
    for start in range(0, len(messages), BATCH):
        batch = process_batch(quiet, messages[start:start + BATCH])
        out["signals"] += [keyed_sha(r) for r in batch.signals]
        out["dead_letters"] += [keyed_sha(r) for r in batch.dead_letters]
        for record in batch.enriched:
            out["enriched"].append(keyed_sha(record))
            value = orjson.loads(serialise(record).value)   # as the aggregate agent reads it
            closed = aggregator.update(value["group"], value, 0)
            out["windows"] += [sha(orjson.dumps(w)) for w in closed]
    out["windows"] += [sha(orjson.dumps(w)) for w in aggregator.flush()]
    return out


def replay_files(settings: Settings, events: Path, tmp_path: Path) -> dict[str, list[str]]:
    target = tmp_path / "replay.jsonl"
    request = ReplayRequest(source=SourceSpec(file=events),
                            sink=SinkSpec(output=target), progress=False, aggregate=True,
                            replay_id="replay-golden")
    run_replay(request, settings)
    return {f"replay_{kind}": [sha(line) for line in path.read_bytes().splitlines()]
            for kind, path in output_paths(target).items() if path.exists()}


def test_records_are_unchanged_byte_for_byte(pipeline: Pipeline, settings: Settings,
                                              tmp_path: Path) -> None:
    events = golden_events(tmp_path)
    digests: dict[str, Any] = worker_records(pipeline, settings, events)
    digests |= replay_files(settings, events, tmp_path)
    if os.environ.get("SIGNALS_WRITE_GOLDEN_RECORDS") == "1":
        DIGESTS.write_bytes(orjson.dumps(digests, option=orjson.OPT_INDENT_2) + b"\n")
    expected = orjson.loads(DIGESTS.read_bytes())
    assert {k: len(v) for k, v in digests.items()} == {k: len(v) for k, v in expected.items()}
    for kind, values in expected.items():
        changed = [i for i, (a, b) in enumerate(zip(values, digests[kind], strict=True)) if a != b]
        assert not changed, f"{kind}: records {changed[:10]} differ from the pinned bytes"
