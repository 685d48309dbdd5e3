"""`signals bench` with the real models at tiny sizes: what the JSON says, and the bad-input exits.

Only results are asserted (counts, tokens, versions, memory), never how long anything took.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from stream.bench.live import STAMP_BASE_MS, STAMP_STEP_MS, unique
from stream.bench.run import DEFAULT_DATA
from stream.cli import main
from stream.core.records import Position, RawMessage
from stream.core.validate import parse_event_time
from stream.models.manifest import load_manifest
from stream.paths import CHECKOUT
from stream.settings import Settings

GOLDEN = CHECKOUT / "tests" / "golden" / "events.jsonl"
DEMO = CHECKOUT / "deploy" / "demo" / "events.jsonl"
TINY = ("--events", "24", "--batch-sizes", "8,1", "--model-threads", "1")


def bench(capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, str, str]:
    code = main(["bench", *TINY, *(str(a) for a in args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def read_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(path.read_bytes())
    return data


def test_default_input_measures_every_batch_size(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "deep" / "bench.json"
    code, stdout, _ = bench(capsys, "--encoder-bucket-size", "4", "--out", out)
    assert code == 0
    result = read_json(out)
    assert [r["batch_size"] for r in result["throughput"]] == [1, 8]
    for run in result["throughput"]:
        assert run["events"] == 24
        assert run["signals"] + run["dead_letters"] == 24
        assert run["batches"] == 24 // run["batch_size"]
        assert run["latency_ms"]["p50"] <= run["latency_ms"]["max"]
    assert [f["path"] for f in result["input"]["files"]] == [str(p) for p in DEFAULT_DATA]
    assert result["stages"]["batch_size"] == 8
    assert set(result["stages"]["share_of_process_batch"]) == {
        "validate", "encoder", "language_and_heads", "output_records"}
    spent = result["stages"]["seconds"]   # timed from inside process_batch: the calls nest
    assert spent["encoder"] <= spent["enrich"] <= spent["process_batch"]
    assert spent["validate"] + spent["enrich"] <= spent["process_batch"]
    spinning = result["thread_spinning"]   # both choices, at the smallest and largest batch
    assert [r["batch_size"] for r in spinning] == [1, 8]
    for run in spinning:
        for side in ("spinning", "no_spinning"):
            assert run[side]["events_per_s"] > 0 and run[side]["cpu_ms_per_event"] > 0
        assert run["wall_ratio_spinning_vs_not"] > 0
    assert result["environment"]["model_spinning"] is False
    profiles = load_manifest(Settings().manifest_path).profiles
    rows = {row["profile"]: row for row in result["profiles"]["profiles"]}
    assert set(rows) == {"default", *profiles, "default/no-tier", "fast/no-tier",
                         "cascade/no-tier"}
    assert rows["fast/no-tier"]["models"] == rows["fast"]["models"]  # the same models, no tier
    # which encoders served the items: only its own without a tier or cascade
    assert set(rows["fast/no-tier"]["served_by"]) == {rows["fast"]["models"]["embedding"]}
    assert set(rows["cascade/no-tier"]["served_by"]) <= {
        rows["cascade"]["models"]["embedding"], rows["default"]["models"]["embedding"]}
    # a cascade's quality is its own measured one, not its cheap heads'
    assert rows["cascade"]["quality"]["sentiment"] != rows["fast"]["quality"]["sentiment"]
    assert all(row["events_per_s"] > 0 for row in rows.values())
    assert f"wrote {out}" in stdout


def test_bucketing_pads_no_more_than_one_bucket_per_batch(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    assert bench(capsys, "--data", GOLDEN, "--encoder-bucket-size", "2", "--bucket-sizes",
                 "4,8,64", "--out", out)[0] == 0
    bucketing = read_json(out)["bucketing"]
    assert (bucketing["batch_size"], bucketing["configured_bucket_size"]) == (8, 2)
    # 8 and 64 are not smaller than the batch: each would be one bucket, i.e. pad-to-longest.
    variants = {v["name"]: v for v in bucketing["variants"]}
    assert list(variants) == ["bucket_2", "bucket_4", "pad_to_longest"]
    real = bucketing["real_tokens"]
    assert 0 < real <= variants["bucket_2"]["tokens"] <= variants["bucket_4"]["tokens"] \
        < variants["pad_to_longest"]["tokens"]
    assert variants["pad_to_longest"]["speedup_vs_pad_to_longest"] == 1.0


def test_memory_versions_and_environment_are_recorded(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], settings: Settings) -> None:
    out = tmp_path / "bench.json"
    assert bench(capsys, "--data", DEMO, "--out", out)[0] == 0
    result = read_json(out)
    rss = result["peak_rss_mib"]
    assert 0 < rss["before_load"] <= rss["after_load"] <= rss["after_throughput"] \
        <= rss["after_run"]
    env = result["environment"]
    assert env["models"] == load_manifest(settings.manifest_path).active
    assert env["model_threads"] == 1
    assert env["encoder_bucket_size"] == settings.encoder_bucket_size
    assert all(env[name] for name in ("python", "onnxruntime", "numpy", "cpu_count"))
    # Batch 8: buckets of 8, 16 and the configured 32 are all pad-to-longest; 4 is not asked for.
    assert [v["name"] for v in result["bucketing"]["variants"]] == ["pad_to_longest"]


def test_labels_are_dropped_and_bad_lines_dead_lettered(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    golden_line = GOLDEN.read_bytes().splitlines()[0]   # carries "expected"
    assert b'"expected"' in golden_line
    data = tmp_path / "three.jsonl"
    data.write_bytes(golden_line + b"\n\n{\"event_id\": \"cut-off\"\n" + golden_line + b"\n")
    out = tmp_path / "bench.json"
    assert bench(capsys, "--data", data, "--out", out)[0] == 0
    for run in read_json(out)["throughput"]:
        assert (run["signals"], run["dead_letters"]) == (16, 8)   # 3 lines cycled to 24


@pytest.mark.parametrize(("content", "problem"), [
    (None, "No such file"), (b"", "has no events"), (b"\n  \n", "has no events")])
def test_unusable_data_file_exits_2_naming_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | None,
        problem: str) -> None:
    path = tmp_path / "events.jsonl"
    if content is not None:
        path.write_bytes(content)
    code, _, err = bench(capsys, "--data", path, "--out", tmp_path / "b.json")
    assert code == 2
    assert err.startswith("error: ") and str(path) in err and problem in err
    assert "Traceback" not in err
    assert not (tmp_path / "b.json").exists()


@pytest.mark.parametrize(("flag", "value", "problem"), [
    ("--batch-sizes", "0", "'0' must be at least 1"),
    ("--batch-sizes", "1,x", "'x' is not a whole number"),
    ("--batch-sizes", ",", "at least one batch size"),
    ("--events", "-3", "'-3' must be at least 1")])
def test_bad_sizes_are_usage_errors(capsys: pytest.CaptureFixture[str], flag: str, value: str,
                                    problem: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", f"{flag}={value}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}" in err and problem in err


def test_batch_larger_than_the_run_or_unwritable_out_exits_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = bench(capsys, "--batch-sizes", "64", "--out", tmp_path / "b.json")
    assert code == 2 and "--batch-sizes 64 is larger than --events 24" in err
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    code, _, err = bench(capsys, "--out", blocker / "b.json")
    assert code == 2 and err.startswith(f"error: cannot write {blocker / 'b.json'}")


def test_the_live_backlog_has_new_ids_and_event_times_in_production_order() -> None:
    lines = [b'{"event_id": "a", "content_id": "c1", "event_time": "2026-11-25T09:00:10Z"}',
             b'{"event_id": "b", "content_id": "c2", "event_time": "2026-11-25T09:00:00Z"}',
             b'{"event_id": "d", "content_id": "c3", "event_time": "yesterday"}', b"not json"]
    messages = [RawMessage(line, Position("t", 0, i)) for i, line in enumerate(lines * 2)]
    backlog = [orjson.loads(value) for _, value in unique(messages, start=5)[:3]]
    assert [e["event_id"] for e in backlog] == ["a-5", "b-6", "d-7"]
    times = [parse_event_time(e["event_time"]) for e in backlog[:2]]
    assert times == [STAMP_BASE_MS + 5 * STAMP_STEP_MS, STAMP_BASE_MS + 6 * STAMP_STEP_MS]
    assert backlog[2]["event_time"] == "yesterday"    # a bad time stays a dead letter
    assert unique(messages)[3] == (b"bad-3", b"not json")
