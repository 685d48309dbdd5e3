"""The records the worker, replay and the window folds write on the golden set, pinned byte for
byte (``processing`` and ``failed_at``, the wall-clock fields, aside).

A refactoring must leave every digest in tests/golden/records.sha256.json unchanged. After an
intended change of models or record shapes, rewrite the file with ``make golden-records`` and say
why in the commit.

The digests are kept per int8 kernel family (`kernel_family`): ONNX Runtime picks its int8 matrix
kernels by CPU (AMX, AVX-512 VNNI, AVX-512, AVX-VNNI, AVX2), and they round differently, so the
encoder's floats — and every record that carries them — differ in the last digits between an
AVX-512 VNNI machine and an AVX2 one (266 of 296 signals). On a family with no pinned digests the
machine-independent part is still held (the dead letters, and how many records of each kind);
``make golden-records`` on such a machine adds its family.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream.core.outputs import Record, serialise
from stream.core.pipeline import Pipeline, process_batch
from stream.core.records import Position, RawMessage
from stream.replay.plan import ReplayRequest, SinkSpec, SourceSpec
from stream.replay.run import run_replay
from stream.replay.sinks import output_paths
from stream.settings import Settings
from stream.windows.aggregator import WindowAggregator
from stream.windows.kinds import window_kinds

# Best first, as MLAS dispatches its int8 GEMM; a CPU with none of them is keyed by its machine.
FAMILIES = ("amx_int8", "avx512_vnni", "avx512bw", "avx_vnni", "avx2")
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


def kernel_family() -> str:
    """The int8 kernel family ONNX Runtime's MLAS chooses on this CPU (the best it has)."""
    flags: set[str] = set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    return next((family for family in FAMILIES if family in flags), platform.machine())


def test_records_are_unchanged_byte_for_byte(pipeline: Pipeline, settings: Settings,
                                              tmp_path: Path) -> None:
    events = golden_events(tmp_path)
    digests: dict[str, Any] = worker_records(pipeline, settings, events)
    digests |= replay_files(settings, events, tmp_path)
    pinned: dict[str, dict[str, list[str]]] = orjson.loads(DIGESTS.read_bytes())
    family = kernel_family()
    if os.environ.get("SIGNALS_WRITE_GOLDEN_RECORDS") == "1":
        pinned[family] = digests
        DIGESTS.write_bytes(orjson.dumps(pinned, option=orjson.OPT_INDENT_2
                                         | orjson.OPT_SORT_KEYS) + b"\n")
    for other in pinned.values():      # whatever the CPU: the same records, the same dead letters
        assert {k: len(v) for k, v in digests.items()} == {k: len(v) for k, v in other.items()}
        assert digests["dead_letters"] == other["dead_letters"]
    if family not in pinned:
        pytest.skip(f"no pinned record bytes for the int8 kernels of this CPU ({family}; pinned: "
                    f"{', '.join(sorted(pinned))}); `make golden-records` adds them")
    expected = pinned[family]
    for kind, values in expected.items():
        changed = [i for i, (a, b) in enumerate(zip(values, digests[kind], strict=True)) if a != b]
        assert not changed, f"{kind}: records {changed[:10]} differ from the pinned bytes"
