"""`signals replay --engine spark` on the real broker, in local mode (``local[2]``): the Spark job
writes the records the local replay writes (byte for byte, ``replay_id`` included; files even in
the same order), to files and through Spark's Kafka sink; bad arguments stop it before Spark starts.

One SparkSession serves the module (its JVM start is most of the time); the ranges are tiny."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from pyspark import SparkContext  # make test installs the [spark] extra: no skip when missing
from pyspark.sql import SparkSession

from stream.cli import main
from stream.connectors.kafka import ensure_topics, produce
from stream.replay.plan import ReplayRequest, SinkSpec, SourceSpec
from stream.replay.run import run_replay
from stream.replay.sinks import output_paths
from stream.replay.spark import run_spark_replay, spark_session
from stream.settings import Settings
from tests.integration.helpers import collect

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def topic_settings(kafka_bootstrap: str) -> Settings:
    """A 2-partition input topic holding 30 events (2 of them broken), produced once."""
    run = uuid.uuid4().hex[:8]
    settings = Settings.load({}, {"bootstrap_servers": kafka_bootstrap}).replace(
        app_id=f"spark-it-{run}", topic_prefix=f"sp-{run}.", partitions=2, batch_max_size=4,
        model_threads=1, spark_master="local[2]", log_format="json")
    ensure_topics(settings)
    inputs = [(e["content_id"].encode(), orjson.dumps(e)) for e in map(event, range(28))]
    produce(settings, settings.topics.events, [*inputs[:9], (b"bad", b'{"event_id": "x", '),
                                               *inputs[9:], (None, b"\xff not utf-8")])
    return settings


@pytest.fixture(scope="module")
def spark(topic_settings: Settings) -> Iterator[SparkSession]:
    session = spark_session(topic_settings)
    yield session
    session.stop()


def event(i: int) -> dict[str, Any]:
    text = {"text": f"Comment {i}: this show about interest rates is great"} if i % 4 == 3 \
        else {"title": f"Episode {i}: rates, yields and mortgages",
              "description": "Two economists unpack the week's data." + " More." * (i % 5)}
    return {"event_id": f"sp-{i}", "event_type": "content.published", "content_id": f"c-{i}",
            "content_type": "comment" if i % 4 == 3 else "episode",
            "event_time": f"2026-01-05T10:{i * 13 // 60:02d}:{i * 13 % 60:02d}Z",
            "market": "US" if i % 3 else "DE", **text}


def by_source(lines: list[bytes]) -> dict[tuple[str, int, int], bytes]:
    out = {}
    for line in lines:
        source = orjson.loads(line)["source"]
        out[(source["topic"], source["partition"], source["offset"])] = line
    return out


def request(settings: Settings, sink: SinkSpec, **range_: Any) -> ReplayRequest:
    return ReplayRequest(SourceSpec(topic=settings.topics.events, **range_), sink,
                         aggregate=True, progress=False)


def test_bad_arguments_stop_before_spark_starts(topic_settings: Settings,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    before = SparkContext._active_spark_context
    topic = topic_settings.topics.events
    common = ["replay", "--engine", "spark", "--topic", topic,
              "--bootstrap-servers", topic_settings.bootstrap_servers]
    cases = {
        "unknown version": (["--model", "embedding=nope-v9"], "nope-v9"),
        "from after to": (["--from-offset", "9", "--to-offset", "3"],
                          "--from-offset 9 is after --to-offset 3"),
        "past the end": (["--from-offset", "500"], "empty range"),
        "a checkpoint": (["--checkpoint", "x.ckpt"], "--checkpoint is the local engine's"),
    }
    for name, (extra, message) in cases.items():
        assert main([*common, *extra]) == 2, name
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], (name, err)
    assert SparkContext._active_spark_context is before   # no SparkContext was created


def test_spark_writes_the_local_replays_files(topic_settings: Settings, spark: SparkSession,
                                              tmp_path: Path) -> None:
    local_out, spark_out = tmp_path / "local" / "out.jsonl", tmp_path / "spark" / "out.jsonl"
    local_out.parent.mkdir()
    spark_out.parent.mkdir()
    # offsets [1, ...) of each partition: the chunks start one record in, not at offset 0
    local = run_replay(request(topic_settings, SinkSpec(output=local_out), from_offset=1),
                       topic_settings)
    remote = run_spark_replay(request(topic_settings, SinkSpec(output=spark_out), from_offset=1),
                              topic_settings, spark=spark)
    assert remote.replay_id == local.replay_id
    assert (remote.counts.read, remote.counts.signals, remote.counts.dead_letters) == \
        (local.counts.read, local.counts.signals, local.counts.dead_letters) == (28, 26, 2)
    assert remote.counts.windows == local.counts.windows > 0
    for kind, path in output_paths(local_out).items():
        mine, theirs = path.read_bytes(), output_paths(spark_out)[kind].read_bytes()
        if kind != "windows":   # the acceptance criterion: keyed by source, byte-identical
            assert by_source(theirs.splitlines()) == by_source(mine.splitlines())
        assert theirs == mine, kind   # and more: the same files, line for line
    assert sorted(p.name for p in spark_out.parent.iterdir()) == \
        ["out.dlq.jsonl", "out.jsonl", "out.windows.jsonl"]   # no staging folder left behind


def test_spark_produces_the_same_records_to_the_replay_topics(
        topic_settings: Settings, spark: SparkSession, tmp_path: Path) -> None:
    local_out = tmp_path / "out.jsonl"
    run_replay(request(topic_settings, SinkSpec(output=local_out), to_offset=12), topic_settings)
    result = run_spark_replay(request(topic_settings, SinkSpec(), to_offset=12), topic_settings,
                              spark=spark)
    expected = {kind: path.read_bytes().splitlines()
                for kind, path in output_paths(local_out).items()}
    names = result.sink.removeprefix("topics ").split(", ")
    wanted = {n: len(expected[k]) for n, k in zip(names, ("signals", "dead_letters", "windows"),
                                                  strict=True)}
    got = collect(topic_settings, names, timeout_s=60,
                  until=lambda seen: all(len(seen[n]) >= k for n, k in wanted.items()))
    values = {n: [r.value for r in got[n]] for n in names}
    assert by_source(values[names[0]]) == by_source(expected["signals"])
    assert by_source(values[names[1]]) == by_source(expected["dead_letters"])
    assert Counter(values[names[2]]) == Counter(expected["windows"])
    assert all(len(values[n]) == k for n, k in wanted.items())   # each record once
    signal_keys = {orjson.loads(r.value)["content_id"].encode(): r.key for r in got[names[0]]}
    assert all(key == content_id for content_id, key in signal_keys.items())
