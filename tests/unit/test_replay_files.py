"""`signals replay` file to file, no Kafka: the worker's records, deterministic across runs,
ranges, dry runs, windows, argument errors, and a Ctrl-C'd replay resumed byte for byte."""

from __future__ import annotations

import gzip
import itertools
import os
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from stream.cli import main
from stream.core.outputs import serialise
from stream.core.pipeline import Pipeline, process_batch
from stream.core.records import Position, RawMessage
from stream.errors import ConfigError, InputFileError
from stream.paths import CHECKOUT
from stream.replay.plan import ReplayRequest, SinkSpec, SourceSpec
from stream.replay.run import run_replay
from stream.replay.sinks import output_paths
from stream.replay.sources import FileSource
from stream.replay.state import load_checkpoint
from stream.settings import Settings
from tests.processes import interrupt_after_checkpoint


def event(i: int) -> dict[str, Any]:
    kind = ("episode", "track", "comment")[i % 3]
    text = {"text": f"Comment {i}: the interview about jazz was great"} if kind == "comment" \
        else {"title": f"Show {i}: markets, rates and the economy", "description": "Weekly news."}
    return {"event_id": f"r-{i}", "event_type": "content.published", "content_id": f"c-{i}",
            "content_type": kind, "event_time": f"2026-01-05T10:{i // 6:02d}:{i % 6 * 10:02d}Z",
            "market": "US", **text}


def write_events(path: Path, n: int = 30) -> list[bytes]:
    """`n` valid events, two invalid lines and a blank line; returns the lines as written."""
    lines = [orjson.dumps(event(i)) for i in range(n)]
    lines.insert(5, b'{"event_id": "broken", ')
    lines.insert(12, orjson.dumps({**event(99), "content_type": "podcast"}))
    lines.insert(20, b"   ")
    path.write_bytes(b"\n".join(lines) + b"\n")
    return lines


def replay(settings: Settings, path: Path, output: Path,
           lines: tuple[int | None, int | None] = (None, None), **options: Any) -> Any:
    request = ReplayRequest(source=SourceSpec(file=path, from_offset=lines[0], to_offset=lines[1]),
                            sink=SinkSpec(output=output), progress=False, **options)
    return run_replay(request, settings)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


@pytest.fixture
def replay_settings(settings: Settings) -> Settings:
    return settings.replace(batch_max_size=8)


def test_file_replay_writes_the_worker_records_without_wall_clock_fields(
    replay_settings: Settings, pipeline: Pipeline, tmp_path: Path
) -> None:
    source = tmp_path / "events.jsonl"
    lines = write_events(source)
    result = replay(replay_settings, source, tmp_path / "out.jsonl")
    assert (result.counts.read, result.counts.signals, result.counts.dead_letters,
            result.counts.skipped) == (33, 30, 2, 1)
    signals = read_jsonl(tmp_path / "out.jsonl")
    letters = read_jsonl(tmp_path / "out.dlq.jsonl")
    assert [s["event_id"] for s in signals] == [f"r-{i}" for i in range(30)]
    assert all(s["replay_id"] == result.replay_id and "processing" not in s for s in signals)
    assert all(s["models"] == signals[0]["models"] and s["models"] for s in signals)
    assert [(d["source"]["offset"], d["error"]["class"]) for d in letters] == [
        (6, "invalid_json"), (13, "schema_violation")]          # offsets are line numbers
    assert all("failed_at" not in d and d["replay_id"] == result.replay_id for d in letters)

    # The same code path as the worker: process_batch over the same 8-line chunks gives the same
    # signals and embeddings (the live pipeline only adds `processing`).
    chunk = [RawMessage(line, Position("events.jsonl", 0, n + 1))
             for n, line in enumerate(lines[:8])]
    live = [orjson.loads(serialise(r).value) for r in process_batch(pipeline, chunk).signals]
    for mine, theirs in zip(signals, live, strict=False):
        assert "processing" in theirs
        assert mine["signals"] == theirs["signals"] and mine["source"] == theirs["source"]
        assert mine["embedding"]["values"] == theirs["embedding"]["values"]


def test_a_repeated_replay_is_byte_identical_and_gzip_input_reads_the_same(
    replay_settings: Settings, tmp_path: Path
) -> None:
    source = tmp_path / "events.jsonl"
    write_events(source)
    first = replay(replay_settings, source, tmp_path / "a.jsonl", aggregate=True)
    second = replay(replay_settings, source, tmp_path / "b.jsonl", aggregate=True)
    assert first.replay_id == second.replay_id
    for kind in ("signals", "dead_letters", "windows"):
        a, b = output_paths(tmp_path / "a.jsonl")[kind], output_paths(tmp_path / "b.jsonl")[kind]
        assert a.read_bytes() == b.read_bytes() and a.stat().st_size > 0

    packed = tmp_path / "packed" / "events.jsonl"
    packed.parent.mkdir()
    packed.write_bytes(gzip.compress(source.read_bytes()))     # gzip found by its magic number
    third = replay(replay_settings, packed, tmp_path / "c.jsonl", replay_id=first.replay_id)
    assert (tmp_path / "c.jsonl").read_bytes() == (tmp_path / "a.jsonl").read_bytes()
    assert third.counts.read == first.counts.read


def test_windows_are_keyed_by_group_and_carry_the_replay_metadata(
    replay_settings: Settings, tmp_path: Path
) -> None:
    source = tmp_path / "events.jsonl"
    write_events(source)
    result = replay(replay_settings, source, tmp_path / "out.jsonl", aggregate=True)
    windows = read_jsonl(tmp_path / "out.windows.jsonl")
    assert result.counts.windows == len(windows) > 0
    tumbling: dict[str, int] = {}
    for window in windows:
        assert window["replay_id"] == result.replay_id and window["models"]
        if window["window"]["kind"] == "tumbling":
            tumbling[window["group"]] = tumbling.get(window["group"], 0) + window["count"]
    # every valid event is in exactly one tumbling window (flush closes the last ones)
    assert sum(tumbling.values()) == 30
    assert tumbling["content_type=track|market=US"] == 10


def test_a_line_range_and_a_dry_run(replay_settings: Settings, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "events.jsonl"
    write_events(source)
    result = replay(replay_settings, source, tmp_path / "out.jsonl",
                    lines=(4, 14))
    offsets = [s["source"]["offset"] for s in read_jsonl(tmp_path / "out.jsonl")]
    letters = [d["source"]["offset"] for d in read_jsonl(tmp_path / "out.dlq.jsonl")]
    assert sorted(offsets + letters) == list(range(4, 14))
    assert result.counts.read == 10

    dry = replay(replay_settings, source, tmp_path / "dry.jsonl", dry_run=True,
                 checkpoint=tmp_path / "dry.ckpt")
    assert (dry.counts.read, dry.counts.signals, dry.counts.dead_letters) == (33, 30, 2)
    assert not (tmp_path / "dry.jsonl").exists() and not (tmp_path / "dry.ckpt").exists()
    assert "nothing was produced" in capsys.readouterr().out


def test_the_pipeline_option_that_drops_wall_clock_fields(pipeline: Pipeline) -> None:
    messages = [RawMessage(orjson.dumps(event(1)), Position("t", 0, 0)),
                RawMessage(b"{oops", Position("t", 0, 1))]
    live = process_batch(pipeline, messages)
    assert "processing" in live.signals[0].to_json()
    assert "failed_at" in live.dead_letters[0].to_json()
    quiet = Pipeline(pipeline.validate, pipeline.enricher, run_id="r1", include_processing=False)
    first, second = process_batch(quiet, messages), process_batch(quiet, messages)
    assert ([serialise(r) for r in (*first.signals, *first.dead_letters)]
            == [serialise(r) for r in (*second.signals, *second.dead_letters)])
    assert first.dead_letters[0].to_json()["replay_id"] == "r1"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--file", "{tmp}/missing.jsonl", "--output", "{tmp}/o.jsonl"], "cannot read"),
        (["--file", "{src}", "--output", "{tmp}/o.jsonl", "--model", "embedding=nope"],
         "unknown embedding model version 'nope'"),
        (["--file", "{src}", "--output", "{tmp}/o.jsonl", "--model", "nosuchtask=v1"],
         "unknown model task 'nosuchtask'"),
        (["--file", "{src}", "--output", "{tmp}/o.jsonl", "--from-offset", "9",
          "--to-offset", "3"], "--from-offset 9 is after --to-offset 3"),
        (["--file", "{src}", "--output", "{tmp}/o.jsonl", "--from-offset", "500"],
         "empty range"),
        (["--file", "{src}", "--output", "{tmp}/o.jsonl", "--from-time",
          "2026-01-05T10:00:00Z"], "need a topic"),
        (["--file", "{src}", "--output", "{src}"], "is the input file"),
        (["--file", "{src}", "--output", "{tmp}/no/such/dir/o.jsonl"], "cannot write"),
        (["--file", "{src}", "--output", "{tmp}/o.jsonl", "--index"],
         "set it to pgvector with SIGNALS_SIMILARITY_DSN"),
        (["--file", "{src}", "--output", "{tmp}/o.jsonl", "--index", "--engine", "spark"],
         "--index runs on the local engine"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(
    args: list[str], fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "events.jsonl"
    write_events(source)
    argv = [a.format(tmp=tmp_path, src=source) for a in args]
    assert main(["replay", *argv, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and fragment in err and "Traceback" not in err


def test_malformed_flags_are_usage_errors(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--topic", "t", "--from-time", "2026-01-05T10:00:00"],
                 ["--topic", "t", "--partitions", "x"],
                 ["--file", "f", "--output", "o", "--to-live"],
                 ["--topic", "t", "--rate", "0"]):
        with pytest.raises(SystemExit) as info:
            main(["replay", *argv])
        assert info.value.code == 2
    assert "has no UTC offset; add Z or +hh:mm" in capsys.readouterr().err


def test_ctrl_c_stops_after_a_checkpointed_batch_and_the_resumed_output_is_identical(
    replay_settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, out, ckpt = tmp_path / "events.jsonl", tmp_path / "out.jsonl", tmp_path / "r.ckpt"
    write_events(source, n=37)            # 40 lines: 10 batches of 4
    argv = ["replay", "--file", str(source), "--output", str(out), "--checkpoint", str(ckpt),
            "--batch-max-size", "4", "--model-threads", "1", "--aggregate", "--no-progress",
            "--rate", "8"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNALS_")}
    code, stdout, stderr = interrupt_after_checkpoint(argv, ckpt, env, cwd=CHECKOUT)
    assert code == 130, stderr.decode()
    assert b"interrupted; left to do: 0:[" in stdout and b"run the same command" in stdout
    stopped = load_checkpoint(ckpt)
    assert stopped is not None and 1 < stopped.positions[0] < 41
    assert (stopped.positions[0] - 1) % 4 == 0                       # at a batch boundary
    assert out.stat().st_size == stopped.sink_state["signals"]       # flushed before the save

    with out.open("ab") as handle:        # what a batch abandoned by a second Ctrl-C leaves
        handle.write(b'{"half": "a batch')
    assert main(argv) == 0
    resumed = load_checkpoint(ckpt)
    assert resumed is not None and resumed.finished and resumed.counts.read == 40
    assert "resuming at 0:[" in capsys.readouterr().out

    whole = tmp_path / "whole.jsonl"
    assert main(["replay", "--file", str(source), "--output", str(whole), "--batch-max-size", "4",
                 "--aggregate", "--no-progress"]) == 0
    for kind in ("signals", "dead_letters", "windows"):   # no gap, no duplicate, same bytes
        mine, theirs = output_paths(out)[kind], output_paths(whole)[kind]
        assert mine.read_bytes() == theirs.read_bytes() and theirs.stat().st_size > 0
    assert main(argv) == 0 and "already complete" in capsys.readouterr().out


def test_a_checkpoint_only_resumes_its_own_replay(replay_settings: Settings,
                                                  tmp_path: Path) -> None:
    source, ckpt = tmp_path / "events.jsonl", tmp_path / "r.ckpt"
    write_events(source)
    replay(replay_settings, source, tmp_path / "out.jsonl", checkpoint=ckpt,
           lines=(None, 9))
    with pytest.raises(ConfigError, match="belongs to another replay"):
        replay(replay_settings, source, tmp_path / "out.jsonl", checkpoint=ckpt)
    with pytest.raises(ConfigError, match="written for the sink"):
        replay(replay_settings, source, tmp_path / "elsewhere.jsonl", checkpoint=ckpt,
               lines=(None, 9))


def test_embeddings_depend_slightly_on_batch_mates(settings: Settings, tmp_path: Path) -> None:
    """Why replay chunks deterministically: other batch sizes give close, not equal, vectors."""
    source = tmp_path / "events.jsonl"
    write_events(source)
    replay(settings.replace(batch_max_size=8), source, tmp_path / "b8.jsonl", replay_id="x")
    replay(settings.replace(batch_max_size=3), source, tmp_path / "b3.jsonl", replay_id="x")
    a, b = read_jsonl(tmp_path / "b8.jsonl"), read_jsonl(tmp_path / "b3.jsonl")
    cosines = [float(np.dot(x["embedding"]["values"], y["embedding"]["values"]))
               for x, y in zip(a, b, strict=True)]
    assert min(cosines) > 0.99
    labels = [{t: s["label"] for t, s in x["signals"].items()} for x in a]
    assert labels == [{t: s["label"] for t, s in y["signals"].items()} for y in b]
    gaps = [abs(s["score"] - y["signals"][t]["score"])
            for x, y in zip(a, b, strict=True) for t, s in x["signals"].items()]
    assert max(gaps) < 0.1  # e5's int8 graph quantises activations per batch: up to ~0.09 seen


def test_a_file_that_shrank_since_the_replay_started_is_an_error(tmp_path: Path) -> None:
    source = tmp_path / "events.jsonl"
    write_events(source, n=5)                          # 8 lines
    batches = FileSource(source, 4, {0: (1, 20)}).batches({0: 1})   # a checkpoint said 19
    assert [b.next_position for b in itertools.islice(batches, 2)] == [5, 9]
    with pytest.raises(InputFileError, match="ends at line 8, but this replay covers lines up "
                                             "to 19"):
        next(batches)
