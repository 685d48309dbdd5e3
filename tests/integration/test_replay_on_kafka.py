"""`signals replay` on a real broker: an offset range replayed with the live worker's model
versions matches the live output, a time range selects exactly its events, and a replay stopped
with Ctrl-C and resumed has no gaps and no duplicates."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from stream.cli import main
from stream.connectors.kafka import ensure_topics, produce, producer
from stream.replay.plan import (
    ReplayRequest,
    ReplayTopics,
    SinkSpec,
    SourceSpec,
    iso_time,
    plan_replay,
)
from stream.replay.run import run_replay
from stream.replay.state import load_checkpoint
from stream.settings import Settings
from tests.integration.helpers import collect, running_worker, settings_env, values
from tests.processes import interrupt_after_checkpoint

pytestmark = pytest.mark.integration


@pytest.fixture
def it_settings(kafka_bootstrap: str, tmp_path: Path) -> Settings:
    run = uuid.uuid4().hex[:8]
    return Settings.load({}, {"bootstrap_servers": kafka_bootstrap}).replace(
        app_id=f"replay-it-{run}", topic_prefix=f"rp-{run}.", partitions=2,
        worker_data_dir=tmp_path / "worker", batch_max_size=8, batch_max_wait_s=0.2,
        model_threads=1, log_format="json")


def event(i: int) -> dict[str, Any]:
    text = {"text": f"Comment {i}: loved this episode about the bond market"} if i % 4 == 3 \
        else {"title": f"Episode {i}: rates, yields and mortgages",
              "description": "Two economists unpack the week's data." + " More." * (i % 5)}
    return {"event_id": f"rp-{i}", "event_type": "content.published", "content_id": f"c-{i}",
            "content_type": "comment" if i % 4 == 3 else "episode",
            "event_time": f"2026-01-05T10:00:{i:02d}Z", "market": "US", **text}


def keyed(events: list[dict[str, Any]]) -> list[tuple[bytes | None, bytes]]:
    return [(e["content_id"].encode(), orjson.dumps(e)) for e in events]


def by_source(records: list[Any]) -> dict[tuple[int, int], tuple[bytes, dict[str, Any]]]:
    out = {}
    for record in records:
        value = orjson.loads(record.value)
        out[(value["source"]["partition"], value["source"]["offset"])] = (record.key, value)
    return out


def test_an_offset_range_replay_matches_the_live_worker(it_settings: Settings,
                                                        tmp_path: Path) -> None:
    topics = it_settings.topics
    inputs = keyed([event(i) for i in range(24)]) + [(b"bad", b'{"event_id": "x", ')] * 2
    ensure_topics(it_settings)
    produce(it_settings, topics.events, inputs)
    log = tmp_path / "worker.log"
    with running_worker(it_settings, log) as worker:
        live = collect(it_settings, [topics.signals, topics.dlq], timeout_s=120, worker=worker,
                       worker_log=log, until=lambda s: len(s[topics.signals]) + len(
                           s[topics.dlq]) >= len(inputs))
    live_signals, live_letters = by_source(live[topics.signals]), by_source(live[topics.dlq])
    versions = next(iter(live_signals.values()))[1]["models"]

    request = ReplayRequest(SourceSpec(topic=topics.events, from_offset=2, to_offset=11),
                            models=versions, progress=False)
    result = run_replay(request, it_settings)
    sink = replay_sink(request, it_settings)
    expected = {k for k in (*live_signals, *live_letters) if 2 <= k[1] < 11}
    assert result.counts.read == len(expected) and result.exit_code == 0
    seen = collect(it_settings, [sink.signals, sink.dlq], timeout_s=30,
                   until=lambda s: len(s[sink.signals]) + len(s[sink.dlq]) >= len(expected))
    replayed, letters = by_source(seen[sink.signals]), by_source(seen[sink.dlq])
    assert set(replayed) | set(letters) == expected and not set(replayed) & set(letters)

    cosines, score_gaps, label_pairs = [], [], []
    for position, (key, mine) in replayed.items():
        live_key, theirs = live_signals[position]
        assert key == live_key and mine["event_id"] == theirs["event_id"]
        assert mine["replay_id"] == result.replay_id and "processing" not in mine
        assert mine["models"] == theirs["models"] == versions
        assert set(mine["signals"]) == set(theirs["signals"])
        label_pairs += [(s["label"], theirs["signals"][t]["label"])
                        for t, s in mine["signals"].items()]
        score_gaps += [abs(s["score"] - theirs["signals"][t]["score"])
                       for t, s in mine["signals"].items()]
        cosines.append(float(np.dot(mine["embedding"]["values"],
                                    theirs["embedding"]["values"])))
    for position, (key, mine) in letters.items():
        assert key == live_letters[position][0] == b"bad"
        assert mine["error"] == live_letters[position][1]["error"]
    # Live batches are cut by time, replay batches by count: the int8 encoder's activations are
    # quantised per batch, so embeddings are close rather than equal (see README "Replay").
    print(f"\nlive vs replay over {len(cosines)} signals: min cosine {min(cosines):.6f}, "
          f"max score gap {max(score_gaps):.2e}")
    # A label whose score sits within that small gap of a decision boundary may flip, so labels
    # must agree almost everywhere rather than everywhere.
    agreement = sum(a == b for a, b in label_pairs) / len(label_pairs)
    assert min(cosines) >= 0.99 and max(score_gaps) <= 0.06 and agreement >= 0.9


def produce_at(settings: Settings, topic: str, rows: list[tuple[int, int, int]]) -> None:
    """(partition, i, timestamp_ms) → one event each, with that broker timestamp."""
    client = producer(settings)
    try:
        for partition, i, ts in rows:
            client.send(topic, key=f"c-{i}".encode(), value=orjson.dumps(event(i)),
                        partition=partition, timestamp_ms=ts)
        client.flush()
    finally:
        client.close()


def test_a_time_range_selects_exactly_its_events(it_settings: Settings, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    topic = it_settings.topics.events
    ensure_topics(it_settings)
    # Broker timestamps a few minutes old: the broker's time retention (24 h) could delete
    # records with older timestamps at any retention check, in the middle of the test.
    t0 = (int(time.time()) // 60 - 10) * 60_000
    seconds = {0: [0, 10, 20, 30, 5, 40], 1: [15, 25, 35, 45]}   # p0 has one late timestamp
    rows = [(p, 10 * p + n, t0 + s * 1000) for p, ss in seconds.items() for n, s in enumerate(ss)]
    produce_at(it_settings, topic, rows)

    out = tmp_path / "range.jsonl"
    request = ReplayRequest(SourceSpec(topic=topic, from_time_ms=t0 + 10_000,
                                       to_time_ms=t0 + 35_000),
                            sink=SinkSpec(output=out), progress=False)
    result = run_replay(request, it_settings)
    chosen = {f"rp-{i}" for _, i, ts in rows if t0 + 10_000 <= ts < t0 + 35_000}
    assert chosen == {"rp-1", "rp-2", "rp-3", "rp-10", "rp-11"}
    assert {orjson.loads(line)["event_id"] for line in out.read_bytes().splitlines()} == chosen
    assert (result.counts.read, result.counts.skipped) == (6, 1)   # the late t0 + 5 s one

    base = ["replay", "--bootstrap-servers", it_settings.bootstrap_servers, "--no-progress"]
    assert main([*base, "--topic", topic, "--partitions", "1", "--dry-run",
                 "--from-time", iso_time(t0 + 20_000)]) == 0
    assert "dry run" in capsys.readouterr().out
    for argv, fragment in (
        (["--topic", topic + "x"], f"unknown topic '{topic}x' at the broker; did you mean"),
        (["--topic", topic, "--partitions", "7"], "has no partition 7"),
        (["--topic", topic, "--from-time", iso_time(t0 - 3_600_000),
          "--to-time", iso_time(t0 - 1_800_000)], "empty range"),
        (["--topic", topic, "--from-offset", "50"], "empty range"),
    ):
        assert main([*base, *argv]) == 2
        assert fragment in capsys.readouterr().err


def test_an_interrupted_and_resumed_replay_has_no_gaps_and_no_duplicates(
    it_settings: Settings, tmp_path: Path
) -> None:
    settings = it_settings.replace(batch_max_size=4)
    topic, ckpt = settings.topics.events, tmp_path / "replay.ckpt"
    ensure_topics(settings)
    produce(settings, topic, keyed([event(i) for i in range(40)]))
    argv = ["replay", "--topic", topic, "--checkpoint", str(ckpt), "--no-progress",
            "--rate", "10"]
    code, stdout, stderr = interrupt_after_checkpoint(argv, ckpt, settings_env(settings))
    assert code == 130, stderr.decode()[-2000:]
    stopped = load_checkpoint(ckpt)
    assert stopped is not None and 0 < stopped.counts.read < 40
    assert b"interrupted; left to do" in stdout

    request = ReplayRequest(SourceSpec(topic=topic), checkpoint=ckpt, progress=False)
    result = run_replay(request, settings)
    assert result.counts.read == 40 and result.session.read == 40 - stopped.counts.read
    sink = replay_sink(request, settings)
    # Everything was produced with acks=all before run_replay returned: read for a few seconds
    # more than needed, so a record produced twice would be seen.
    seen = collect(settings, [sink.signals], timeout_s=6,
                   until=lambda s: len(s[sink.signals]) > 40)
    positions = [(v["source"]["partition"], v["source"]["offset"])
                 for v in values(seen[sink.signals])]
    inputs = collect(settings, [topic], timeout_s=10, until=lambda s: len(s[topic]) >= 40)
    assert sorted(set(positions)) == sorted((r.partition, r.offset) for r in inputs[topic])
    assert len(positions) == len(set(positions)) == 40


def replay_sink(request: ReplayRequest, settings: Settings) -> ReplayTopics:
    """The topics the replay wrote, named by its own plan (models and language tier)."""
    topics = plan_replay(request, settings).topics
    assert topics is not None
    return topics
