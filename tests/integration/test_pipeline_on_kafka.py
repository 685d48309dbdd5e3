"""The whole pipeline on a real Kafka broker: N valid + M malformed events in, N signals with the
encoder's output, M dead letters with reasons, the right window counts out, and nothing lost."""

from __future__ import annotations

import base64
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from kafka.admin import NewTopic
from structlog.testing import capture_logs

from stream.connectors.kafka import (
    DLQ_MAX_MESSAGE_BYTES,
    admin_client,
    ensure_topics,
    produce,
    warn_on_a_small_dead_letter_limit,
)
from stream.core.topics import Topics
from stream.models.manifest import load_manifest, reads_encoder
from stream.replay.run import group_partition
from stream.settings import Settings
from tests.integration.helpers import collect, running_worker, values
from tests.schemas import assert_valid

pytestmark = pytest.mark.integration

T0 = "2026-01-05T10:{:02d}:{:02d}Z"  # event times are fixed history: windows use event time


@pytest.fixture
def it_settings(kafka_bootstrap: str, tmp_path: Path) -> Settings:
    run = uuid.uuid4().hex[:8]
    return Settings.load({}, {"bootstrap_servers": kafka_bootstrap}).replace(
        app_id=f"signals-it-{run}", topic_prefix=f"it-{run}.", partitions=2,
        worker_data_dir=tmp_path / "worker", batch_max_size=16, batch_max_wait_s=0.2,
        model_threads=1, window_grace_s=120, log_format="json")


def valid_event(i: int, minute: int, second: int, content_type: str, market: str) -> dict[str, Any]:
    said = "loved this episode" if i % 2 == 0 else "I hate that I love this show"   # mixed
    text_field = {"text": f"Comment number {i}: {said}"} if content_type == "comment" \
        else {"title": f"Blue Train take {i}", "description": "Hard bop, saxophone and trumpet."}
    return {"event_id": f"it-{i}", "event_type": "content.published", "content_id": f"c-{i}",
            "content_type": content_type, "event_time": T0.format(minute, second),
            "market": market, **text_field}


def ids_on_each_partition(first: int, partitions: int) -> list[int]:
    """One event number per input partition, from `first` on: ``c-<n>`` keys land there."""
    chosen: dict[int, int] = {}
    n = first
    while len(chosen) < partitions:
        chosen.setdefault(group_partition(f"c-{n}".encode(), partitions), n)
        n += 1
    return sorted(chosen.values())


@pytest.mark.parametrize("profile", ["", "fast", "cascade", "multilingual"],
                         ids=["default", "fast", "cascade", "multilingual"])
def test_every_event_ends_as_one_signal_or_one_dead_letter(
    it_settings: Settings, tmp_path: Path, profile: str
) -> None:
    """The same contract for every model profile; each signal names the models that served it."""
    it_settings = it_settings.replace(profile=profile)
    manifest = load_manifest(it_settings.manifest_path)
    encoder = manifest.profile(profile).get("embedding", manifest.active["embedding"])
    # Tracks and comments are grouped by content type (shows, episodes, audiobooks by topic).
    # Group A (track × US): 5 events in [10:00, 10:01), 3 in [10:01, 10:02).
    # Group B (comment × GB): 4 events in [10:00, 10:01). The enriched topic is re-keyed, so
    # records from the two input partitions interleave there: 120 s of grace absorbs that.
    # Once those are processed, "closers" at 10:20 move each partition's watermark past every
    # earlier window end + grace, so they close.
    group_a = [valid_event(i, 0, 10 * i, "track", "US") for i in range(5)]
    group_a += [valid_event(5 + i, 1, 5 + 10 * i, "track", "US") for i in range(3)]
    group_b = [valid_event(8 + i, 0, 7 + 10 * i, "comment", "GB") for i in range(4)]
    # The watermark is the minimum over the input partitions, so each group needs a closer from
    # every input partition (keyed by content_id: ids chosen by the producer's own partitioner).
    closers = [valid_event(i, 20, 0, kind, market)
               for kind, market, first in (("track", "US", 100), ("comment", "GB", 200))
               for i in ids_on_each_partition(first, it_settings.partitions)]
    valid = group_a + group_b + closers
    malformed = [
        b'{"event_id": "broken", ',                                   # invalid JSON
        b'{"event_id": "latin1", "title": "caf\xe9"}',               # invalid UTF-8
        orjson.dumps({**valid_event(90, 0, 1, "show", "US"), "content_type": "podcast"}),
        orjson.dumps({**valid_event(91, 0, 1, "show", "US"), "title": "   ",
                      "description": ""}),                            # no text
        orjson.dumps({**valid_event(92, 0, 1, "show", "US"), "description": "x" * 20001}),
        # 900 kB: over SIGNALS_MAX_EVENT_BYTES, under the input topic's 1 MB; its dead letter
        # (the bytes as base64, 1.2 MB, plus the reason) needs the DLQ topic's larger limit.
        orjson.dumps({**valid_event(93, 0, 1, "show", "US"), "description": "y" * 900_000}),
    ]
    first = [(e["content_id"].encode(), orjson.dumps(e)) for e in group_a + group_b]
    first += [(b"bad", m) for m in malformed]
    topics = it_settings.topics
    all_topics = [topics.signals, topics.dlq, topics.windows, topics.events]
    ensure_topics(it_settings)
    produce(it_settings, topics.events, first)

    log = tmp_path / "worker.log"
    expected_windows = 2 + 1 + 5 * 2  # tumbling A: 2, tumbling B: 1, hopping: 5 per group
    with running_worker(it_settings, log) as worker:
        collect(it_settings, all_topics, timeout_s=150, worker=worker, worker_log=log,
                until=lambda s: len(s[topics.signals]) + len(s[topics.dlq]) >= len(first))
        produce(it_settings, topics.events, [(e["content_id"].encode(), orjson.dumps(e))
                                             for e in closers])
        seen = collect(
            it_settings, all_topics, timeout_s=90, worker=worker, worker_log=log,
            until=lambda s: (len(s[topics.signals]) >= len(valid)
                             and len(s[topics.dlq]) >= len(malformed)
                             and len(s[topics.windows]) >= expected_windows
                             and window_total(values(s[topics.windows])) >= (8 + 4) * (1 + 5)))

    signals, letters = values(seen[topics.signals]), values(seen[topics.dlq])
    escalation = manifest.cascade(profile)
    allowed = {None, encoder, manifest.language_tier, escalation.encoder if escalation else None}
    assert sorted(s["event_id"] for s in signals) == sorted(e["event_id"] for e in valid)
    for signal in signals:
        vector = np.asarray(signal["embedding"]["values"], dtype=np.float32)
        assert vector.shape == (384,)
        assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-3   # the encoder's unit vectors
        assert signal["models"]["embedding"] == signal["embedding"]["model"] == encoder
        for task, version in signal["models"].items():   # every head read this encoder
            assert reads_encoder(manifest.resolve(task, version)) in (None, encoder)
        # each signal names the head that served it: the profile's, a cascade's escalation or
        # the language tier's
        for task, served in signal["signals"].items():
            assert reads_encoder(manifest.resolve(task, served["model"])) in allowed
    if escalation is not None:   # the mixed comments are escalated, the tracks are not
        served_by = {reads_encoder(manifest.resolve(task, served["model"]))
                     for signal in signals for task, served in signal["signals"].items()}
        assert {encoder, escalation.encoder} <= served_by

    assert Counter(d["error"]["class"] for d in letters) == Counter(
        {"invalid_json": 1, "invalid_utf8": 1, "schema_violation": 2, "missing_text": 1,
                 "too_large": 1})
    originals = [base64.b64decode(d["original"]["value_b64"]) for d in letters]
    assert sorted(originals) == sorted(malformed)
    assert all(d["error"]["message"] and d["source"]["topic"] == topics.events for d in letters)

    # Nothing lost: the source offsets of signals and dead letters are exactly the input offsets.
    inputs = {(r.partition, r.offset) for r in seen[topics.events]}
    outputs = [(x["source"]["partition"], x["source"]["offset"]) for x in signals + letters]
    assert len(outputs) == len(set(outputs)) == len(inputs)
    assert set(outputs) == inputs

    windows = values(seen[topics.windows])
    # What downstream consumers read off the broker holds to the published contracts.
    contracts = Topics()
    assert_valid(contracts.signals, signals)
    assert_valid(contracts.dlq, letters)
    assert_valid(contracts.windows, windows)
    too_large = next(d for d in letters if d["error"]["class"] == "too_large")
    assert too_large["original"]["value_utf8"] is None   # base64 only: one copy of 900 kB

    tumbling = {(w["group"], w["window"]["start_ms"] % 3_600_000 // 1000): w["count"]
                for w in windows if w["window"]["kind"] == "tumbling"}
    assert tumbling == {("content_type=track|market=US", 0): 5,
                        ("content_type=track|market=US", 60): 3,
                        ("content_type=comment|market=GB", 0): 4}
    hopping_totals: Counter[str] = Counter()
    for w in windows:
        if w["window"]["kind"] == "hopping":
            hopping_totals[w["group"]] += w["count"]
    assert hopping_totals == {"content_type=track|market=US": 8 * 5,
                              "content_type=comment|market=GB": 4 * 5}


def window_total(windows: list[dict[str, Any]]) -> int:
    """Events counted over all closed windows: the wait ends when every window is in, not at
    the first 13 records (a re-sent window would end it early)."""
    return sum(int(w["count"]) for w in windows)


def test_the_dead_letter_topic_takes_large_dead_letters_or_the_worker_says_so(
        it_settings: Settings) -> None:
    """Created by the project: 4 MiB. Created elsewhere with Kafka's default: a warning that
    names the topic and the fix."""
    ensure_topics(it_settings)
    admin = admin_client(it_settings)
    try:
        assert warn_on_a_small_dead_letter_limit(admin, it_settings.topics.dlq) \
            == DLQ_MAX_MESSAGE_BYTES
        elsewhere = it_settings.replace(topic_prefix=it_settings.topic_prefix + "plain.")
        admin.create_topics([NewTopic(elsewhere.topics.dlq, elsewhere.partitions, 1)])
    finally:
        admin.close()
    with capture_logs() as logs:
        ensure_topics(elsewhere)
    [warning] = [line for line in logs if line["event"] == "dead_letter_topic_limit_too_small"]
    assert warning["topic"] == elsewhere.topics.dlq
    assert warning["max_message_bytes"] < DLQ_MAX_MESSAGE_BYTES
    assert f"max.message.bytes={DLQ_MAX_MESSAGE_BYTES}" in warning["fix"]
