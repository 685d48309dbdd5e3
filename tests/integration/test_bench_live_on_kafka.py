"""`signals bench --live` on a real broker: the worker drains a backlog, every event is answered,
and the ratio to `process_batch` is computed from the same events (its value is not asserted:
speed belongs to the bench's JSON, not to a timed test)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.bench.cli import bench_summary
from stream.bench.live import (
    GROUP_DELAY_MS,
    live_settings,
    live_worker,
    local_broker,
    one_layout,
    unique,
)
from stream.bench.run import read_events
from stream.bench.soak import soak, soak_summary
from stream.core.records import ContentEvent
from stream.core.validate import make_validator
from stream.paths import CHECKOUT
from stream.settings import Settings

pytestmark = pytest.mark.integration


def test_the_live_worker_answers_every_event_of_its_backlog_at_each_thread_count(
        settings: Settings) -> None:
    corpus = read_events(CHECKOUT / "deploy" / "demo" / "events.jsonl")[:40]
    keys = [key for key, _ in unique(corpus + corpus)]
    assert len(keys) == len(set(keys))      # every copy is a new item (keyed by content id)
    result = live_worker(settings.replace(partitions=2, batch_max_size=16), corpus,
                         threads=(2, 1, 2), timeout_s=240)
    assert result["events"] == len(corpus)
    validate = make_validator(settings.schemas_dir, settings.max_event_bytes)
    events = [validate(value) for _, value in unique(corpus)]    # as the worker sees them
    indexable = sum(isinstance(e, ContentEvent) and e.event_type != "content.deleted"
                    for e in events)
    assert [run["model_threads"] for run in result["runs"]] == [1, 2]
    for run in result["runs"]:      # the second run's topics and group are its own: all answered
        assert run["answered"] == len(corpus)
        assert run["live_worker_events_per_s"] > 0 and run["process_batch_events_per_s"] > 0
        assert run["indexed"] == indexable       # the index stage caught up with every item
        assert 0 < run["through_index_events_per_s"] <= run["live_worker_events_per_s"]
        assert run["live_vs_process_batch"] == pytest.approx(
            run["live_worker_events_per_s"] / run["process_batch_events_per_s"], rel=0.01)


def test_two_worker_processes_split_the_backlog_and_answer_every_event_once(
        settings: Settings, tmp_path: Path) -> None:
    corpus = read_events(CHECKOUT / "deploy" / "demo" / "events.jsonl")[:40]
    run = settings.replace(partitions=2, batch_max_size=8, model_threads=1)
    with local_broker(overrides=(("group.initial.rebalance.delay.ms", str(GROUP_DELAY_MS)),)) as (
            bootstrap, tmp):
        result = one_layout(live_settings(run, bootstrap, tmp, 1, 2), unique(corpus), tmp,
                            timeout_s=240, workers=2)
        logs = sorted(tmp.glob("worker-w2t1.*.log"))
        batches = [log.read_text().count("batch_processed") for log in logs]
    assert result["workers"] == 2 and result["answered"] == len(corpus)
    assert len(logs) == 2 and all(batches), batches     # each process enriched a share
    assert result["live_vs_process_batch"] == pytest.approx(   # each against its own
        result["live_worker_events_per_s"] / (2 * result["process_batch_events_per_s"]),
        rel=0.01)


def test_the_summary_prints_the_live_ratio_per_thread_count(tmp_path: Path) -> None:
    runs: list[dict[str, object]] = [
        {"model_threads": n, "answered": 10, "live_worker_events_per_s": 90.0 / n,
         "process_batch_events_per_s": 100.0, "live_vs_process_batch": 0.9 / n,
         "indexed": 9, "through_index_events_per_s": 80.0 / n,
         "through_index_vs_process_batch": 0.8 / n}
        for n in (1, 2)]
    runs.append({**runs[0], "workers": 2})
    live = {"events": 10, "batch_max_size": 16, "partitions": 2, "runs": runs}
    lines = bench_summary_lines(live)
    assert any("1 ONNX thread(s)" in line and "x0.90" in line and "index stage 80.0 events/s x0.80"
               in line for line in lines)
    assert any("  2 ONNX thread(s)" in line and "x0.45" in line for line in lines)
    assert any("2 workers x 1 ONNX thread(s): 90.0 events/s" in line for line in lines)


def bench_summary_lines(live: dict[str, object]) -> list[str]:
    base = {"environment": {"model_threads": 1, "encoder_bucket_size": 8, "cpus_usable": 2},
            "input": {"events": 10}, "throughput": [],
            "stages": {"batch_size": 1, "share_of_process_batch": {}},
            "bucketing": {"batch_size": 1, "real_tokens": 0, "variants": []},
            "thread_spinning": [], "peak_rss_mib": {"after_load": 1, "after_throughput": 1,
                                                    "after_run": 1},
            "model_load_s": 0.1,
            "profiles": {"naive_agent": {"encoder": "e", "padded_to": 128, "texts_per_s": 1.0},
                         "batch_size": 1, "profiles": []}}
    return bench_summary({**base, "live_worker": live})


def test_the_soak_reads_the_workers_memory_as_it_drains_its_backlog(settings: Settings) -> None:
    corpus = read_events(CHECKOUT / "deploy" / "demo" / "events.jsonl")[:20]
    result = soak(settings.replace(model_threads=1, partitions=2, batch_max_size=16), corpus,
                  events=60, timeout_s=240)
    assert result["answered"] == 60     # the input cycled three times, each copy a new item
    answered = [r["answered"] for r in result["rss_mib"]]
    assert answered == sorted(answered) and answered[-1] == 60
    assert all(r["rss_mib"] > 50 for r in result["rss_mib"])    # a process with models loaded
    base = result["growth_from"]
    assert base["answered"] >= 6 and result["rss_growth"] == pytest.approx(
        result["rss_mib"][-1]["rss_mib"] / base["rss_mib"] - 1, abs=1e-4)
    assert any("growth" in line for line in soak_summary(result))
