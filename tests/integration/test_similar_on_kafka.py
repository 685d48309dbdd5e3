"""Near-duplicates end to end on a real broker: a worker process, events in, content.similar.v1
out; a second worker rebuilds its index from the compacted content.embeddings.v1 and still
finds the original (and its cluster); a deleted item stops being found; a comment campaign comes
out of signals.campaigns.v1 as one window with one cluster."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka.admin import ConfigResource, ConfigResourceType

from stream.connectors.kafka import admin_client, ensure_topics, produce
from stream.core.topics import Topics
from stream.settings import Settings
from tests.integration.helpers import collect, running_worker, settings_env, values
from tests.schemas import assert_valid

pytestmark = pytest.mark.integration

ORIGINAL = ("The Quantum Ledger, episode 12: how zero-knowledge proofs keep a blockchain "
            "private")


def episode(i: int, content_id: str, minute: int, title: str, **extra: Any) -> tuple[bytes, bytes]:
    data = {"event_id": f"sim-{i}", "event_type": "content.published", "content_id": content_id,
            "content_type": "episode", "event_time": f"2026-01-05T10:{minute:02d}:00Z",
            "title": title, "market": "US", **extra}
    return content_id.encode(), orjson.dumps(data)


@pytest.fixture
def it_settings(kafka_bootstrap: str, tmp_path: Path) -> Settings:
    run = uuid.uuid4().hex[:8]
    return Settings.load({}, {"bootstrap_servers": kafka_bootstrap}).replace(
        app_id=f"signals-sim-{run}", topic_prefix=f"sim-{run}.", partitions=2,
        worker_data_dir=tmp_path / "worker", batch_max_size=8, batch_max_wait_s=0.2,
        model_threads=1, log_format="json")


def similar_for(settings: Settings, count: int, worker: Any, log: Path) -> list[dict[str, Any]]:
    topic = settings.topics.similar
    seen = collect(settings, [topic], until=lambda s: len(s[topic]) >= count, timeout_s=120,
                   worker=worker, worker_log=log)
    records = values(seen[topic])
    assert len(records) >= count, f"{len(records)} of {count} similarity records"
    return records


def test_a_reposted_item_is_a_near_duplicate_even_after_a_restart(
    it_settings: Settings, tmp_path: Path
) -> None:
    ensure_topics(it_settings)
    admin = admin_client(it_settings)
    try:   # the durable log of the index keeps the latest record per item
        name, configs = it_settings.topics.embeddings, {}
        deadline = time.monotonic() + 20
        while not configs and time.monotonic() < deadline:   # a new topic's configs lag
            configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)],
                                             config_filter="all")["topic"][name]
            time.sleep(0.2)
        assert configs["cleanup.policy"]["value"] == "compact"
    finally:
        admin.close()
    first = [episode(1, "ep-original", 0, ORIGINAL),
             episode(2, "ep-other", 1, "Ten-minute morning yoga for complete beginners"),
             episode(3, "ep-repost", 2, "the quantum ledger ep 12: how zero knowledge proofs "
                                        "keep a blockchain private #crypto")]
    log = tmp_path / "worker-1.log"
    deletion = (b"ep-original", orjson.dumps({
        "event_id": "sim-4", "event_type": "content.deleted", "content_id": "ep-original",
        "content_type": "episode", "event_time": "2026-01-05T10:03:00Z"}))
    embeddings = it_settings.topics.embeddings
    with running_worker(it_settings, log) as worker:
        produce(it_settings, it_settings.topics.events, first)
        records = similar_for(it_settings, 3, worker, log)
        produce(it_settings, it_settings.topics.events, [deletion])   # its tombstone, then stop
        collect(it_settings, [embeddings], timeout_s=60, worker=worker, worker_log=log,
                until=lambda s: any(r.key == b"ep-original" and r.value is None
                                    for r in s[embeddings]))
    assert len(records) == 3
    assert_valid(Topics().similar, records)
    by_id = {r["content_id"]: r for r in records}
    repost = by_id["ep-repost"]
    assert repost["near_duplicate"]["content_id"] == "ep-original"
    assert repost["flags"] == ["near_duplicate"] and repost["index"] == "usearch"
    assert repost["cluster"] == "ep-original" and by_id["ep-other"]["cluster"] == "ep-other"
    assert by_id["ep-other"]["flags"] == []

    # The original was deleted before the first worker stopped. A new worker (the index lives in
    # memory: it starts empty) rebuilds from the compacted topic, where the tombstone hides the
    # original, so the rebuild derives the clusters again from what the log holds: the first copy
    # heads its own. A second copy then finds the first one, and joins that cluster.
    log = tmp_path / "worker-2.log"
    with running_worker(it_settings, log) as worker:
        produce(it_settings, it_settings.topics.events,
                [episode(5, "ep-repost-2", 4, ORIGINAL + "!!")])
        records = similar_for(it_settings, 4, worker, log)
    copy = next(r for r in records if r["content_id"] == "ep-repost-2")
    assert copy["near_duplicate"]["content_id"] == "ep-repost"
    assert copy["flags"] == ["near_duplicate"]
    assert copy["cluster"] == "ep-repost"
    assert all(r["content_id"] != "ep-original" for r in copy["related"])
    assert "similarity_index_rebuilt" in log.read_text()


JOIN = "DM me to join t.me/cryptoking88"
CAMPAIGN = [f"I made $4,000 in one week with this crypto trading bot, {JOIN}",   # deploy/demo's
            f"i made $4000 in one week with this crypto trading bot!! {JOIN}",
            f"I made $4,000 in ONE WEEK with this crypto trading bot, {JOIN}",
            f"Made $4,000 in one week with this crypto trading bot - {JOIN}"]


def comment(i: int, minute: int, second: int, text: str) -> tuple[bytes, bytes]:
    data = {"event_id": f"cm-ev-{i}", "event_type": "comment.created", "content_id": f"cm-{i}",
            "content_type": "comment", "event_time": f"2026-01-05T11:{minute:02d}:{second:02d}Z",
            "text": text, "market": "US"}
    return f"cm-{i}".encode(), orjson.dumps(data)


def test_a_comment_campaign_is_one_cluster_in_its_campaign_window(
    it_settings: Settings, tmp_path: Path
) -> None:
    """An original spam comment, then three copies and an unrelated comment in the same minute; a
    comment an hour later moves the watermark (the quiet embeddings partitions go idle) and the
    minute closes. The original is indexed before the copies are produced: items of different
    partitions are indexed in no fixed order, and a copy indexed before its original would start
    a cluster of its own (the cluster rule looks at earlier items only; README)."""
    settings = it_settings.replace(watermark_idle_s=2.0)
    ensure_topics(settings)
    burst = [comment(i, 0, 10 * i, text) for i, text in enumerate(CAMPAIGN)]
    burst.append(comment(7, 0, 45, "Loved the interview with the marine biologist, more please"))
    log = tmp_path / "worker.log"
    with running_worker(settings, log) as worker:
        produce(settings, settings.topics.events, burst[:1])
        similar_for(settings, 1, worker, log)
        produce(settings, settings.topics.events, burst[1:])
        similar = similar_for(settings, len(burst), worker, log)
        time.sleep(3)   # every source partition of the campaign windows is idle now
        produce(settings, settings.topics.events,
                [comment(9, 59, 0, "Does anyone know when season two starts?")])
        topic = settings.topics.campaigns
        seen = collect(settings, [topic], timeout_s=90, worker=worker, worker_log=log,
                       until=lambda s: any(orjson.loads(r.value)["window"]["kind"] == "tumbling"
                                           for r in s[topic]))
    flagged = {r["content_id"] for r in similar if r["flags"]}
    assert flagged == {"cm-1", "cm-2", "cm-3"}
    assert {r["cluster"] for r in similar if r["content_id"] in flagged} == {"cm-0"}
    windows = values(seen[topic])
    assert_valid(Topics().campaigns, windows)
    minutes = [w for w in windows if w["window"]["name"] == "tumbling_60s"]
    assert len(minutes) == 1, windows
    [minute] = minutes
    assert minute["group"] == "content_type=comment"
    assert (minute["count"], minute["near_duplicates"], minute["clusters"]) == (5, 3, 1)
    assert minute["top_clusters"] == [{"cluster": "cm-0", "near_duplicates": 3}]
    assert "campaign_window_closed" in log.read_text()


def test_the_query_command_rebuilds_from_the_topic(
    it_settings: Settings, tmp_path: Path
) -> None:
    ensure_topics(it_settings)
    events = [episode(1, "ep-a", 0, ORIGINAL),
              episode(2, "ep-b", 1, "Ten-minute morning yoga for complete beginners"),
              episode(3, "ep-c", 2, "Sourdough starter troubleshooting for home bakers"),
              (b"ep-c", orjson.dumps({"event_id": "sim-9", "event_type": "content.deleted",
                                      "content_id": "ep-c", "content_type": "episode",
                                      "event_time": "2026-01-05T10:05:00Z"}))]
    log = tmp_path / "worker.log"
    with running_worker(it_settings, log) as worker:
        produce(it_settings, it_settings.topics.events, events)
        similar_for(it_settings, 3, worker, log)
    def similar(*args: str) -> str:   # the command as a user runs it (its own process)
        done = subprocess.run([sys.executable, "-m", "stream.cli", "similar", *args],
                              env=settings_env(it_settings), capture_output=True, text=True,
                              timeout=120, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    out = similar("zero-knowledge proofs on a blockchain", "--k", "5", "--json")
    hits = [orjson.loads(line) for line in out.splitlines()]
    assert [h["content_id"] for h in hits] == ["ep-a", "ep-b"]     # ep-c was deleted
    assert hits[0]["cosine"] > hits[1]["cosine"]
    out = similar("ep-a", "--k", "5")
    assert "query by content id" in out and "ep-b" in out and " ep-a " not in out
