"""The Faust agents in `test_context()` (memory transport): they batch, call the core and send.

A `ListSink` stands in for the output topics, so the tests see exactly what would be produced.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from stream.core.pipeline import Pipeline
from stream.settings import Settings
from stream.worker.app import SignalsApp, create_app, uncancelled
from stream.worker.sinks import ListSink
from stream.worker.windowing import close_idle


def make_app(settings: Settings, pipeline: Pipeline) -> tuple[SignalsApp, ListSink]:
    sink = ListSink()
    app = create_app(settings.replace(app_id=f"agent-test-{uuid.uuid4().hex[:6]}",
                                      batch_max_wait_s=0.05, window_grace_s=0),
                     pipeline, sink=sink)
    return app, sink


async def wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out waiting for the agent")
        await asyncio.sleep(0.02)


def event(i: int, second: int = 0, **changes: Any) -> bytes:
    data = {"event_id": f"e-{i}", "event_type": "content.published", "content_id": f"c-{i}",
            "content_type": "episode", "event_time": f"2026-01-05T10:00:{second:02d}Z",
            "title": f"Episode {i} about gardening", "market": "US", **changes}
    return orjson.dumps(data)


def test_enrich_sends_one_signal_or_one_dead_letter_per_event(
    settings: Settings, pipeline: Pipeline
) -> None:
    signals_app, sink = make_app(settings, pipeline)
    topics = settings.topics
    inputs = [event(1), b"{oops", event(2, content_type="podcast"), event(3)]

    async def scenario() -> None:
        async with signals_app.enrich.test_context() as agent:
            for value in inputs:
                await agent.put(value=value, key=b"k", partition=0, wait=False)
            await wait_until(lambda: len(sink.records[topics.signals])
                             + len(sink.records[topics.dlq]) == len(inputs))

    asyncio.run(scenario())
    signals = [orjson.loads(r.value) for r in sink.records[topics.signals]]
    letters = [orjson.loads(r.value) for r in sink.records[topics.dlq]]
    assert [s["event_id"] for s in signals] == ["e-1", "e-3"]
    assert [r.key for r in sink.records[topics.signals]] == [b"c-1", b"c-3"]
    assert all(len(s["embedding"]["values"]) == 384 for s in signals)
    assert [d["error"]["class"] for d in letters] == ["invalid_json", "schema_violation"]
    assert [d["source"]["offset"] for d in letters] == [1, 2]
    enriched = [orjson.loads(r.value) for r in sink.records[topics.enriched]]
    keys = [r.key.decode() for r in sink.records[topics.enriched]]
    assert keys == [e["group"] for e in enriched]          # keyed by aggregation group
    assert all(k.startswith("topic=") and k.endswith("|market=US") for k in keys)
    assert [e["event_id"] for e in enriched] == ["e-1", "e-3"]


def enriched(i: int, ts_ms: int, source_partition: int, offset: int,
             group: str = "content_type=episode|market=US") -> dict[str, Any]:
    return {"event_id": f"e-{i}", "event_type": "content.published", "group": group,
            "event_time_ms": ts_ms, "signals": {}, "flags": [],
            "source": {"topic": "content.events.v1", "partition": source_partition,
                       "offset": offset}}


T0 = 1_767_607_200_000
HOUR = 3_600_000


def closers(offset: int) -> list[dict[str, Any]]:
    """One far-later record from each of the 4 source partitions: the watermark is their min."""
    return [enriched(900 + p, T0 + HOUR, p, offset) for p in range(4)]


@pytest.mark.parametrize("n_events", [7])
def test_aggregate_folds_into_the_table_and_emits_closed_windows(
    settings: Settings, pipeline: Pipeline, n_events: int
) -> None:
    signals_app, sink = make_app(settings, pipeline)
    topics = settings.topics
    group = "content_type=episode|market=US"
    records = [enriched(i, T0 + i * 1000, i % 4, i) for i in range(n_events)]

    async def scenario() -> None:
        async with signals_app.aggregate.test_context() as agent:
            for record in [*records, *closers(100)]:
                await agent.put(value=orjson.dumps(record), key=group.encode(), partition=0)
            await wait_until(lambda: len(sink.records[topics.windows]) >= 6)

    asyncio.run(scenario())
    windows = [orjson.loads(r.value) for r in sink.records[topics.windows]]
    tumbling = [w for w in windows if w["window"]["kind"] == "tumbling"]
    assert [(w["window"]["start_ms"], w["count"]) for w in tumbling] == [(T0, 7)]
    assert sum(w["count"] for w in windows if w["window"]["kind"] == "hopping") == 7 * 5
    assert all(r.key == group.encode() for r in sink.records[topics.windows])
    assert all("source_offsets" not in w for w in windows)      # bookkeeping stays in the table


def test_re_sent_records_count_once_and_late_ones_go_to_the_late_topic(
    settings: Settings, pipeline: Pipeline
) -> None:
    signals_app, sink = make_app(settings.replace(send_late_records=True), pipeline)
    topics = settings.topics
    group = "content_type=episode|market=US"
    first = [enriched(i, T0 + i * 1000, i % 4, 10 + i) for i in range(8)]
    resent = first[2:6]                   # the enrich stage crashed and sent these again
    late = enriched(50, T0 + 5000, 1, 99)  # source 1 is behind: after the closers, it is late

    async def scenario() -> None:
        async with signals_app.aggregate.test_context() as agent:
            for record in [*first, *resent, *closers(60), late, *resent]:
                await agent.put(value=orjson.dumps(record), key=group.encode(), partition=0)
            await wait_until(lambda: len(sink.records[topics.late]) >= 1)

    asyncio.run(scenario())
    windows = [orjson.loads(r.value) for r in sink.records[topics.windows]]
    [tumbling] = [w for w in windows if w["window"]["kind"] == "tumbling"]
    assert tumbling["count"] == 8
    [report] = [orjson.loads(r.value) for r in sink.records[topics.late]]
    assert report["record"]["event_id"] == "e-50" and report["watermark_ms"] == T0 + HOUR
    assert {w["name"] for w in report["missed"]} == {"tumbling_60s", "hopping_300s_60s"}
    assert signals_app.aggregator.late_records == 1
    assert signals_app.aggregator.duplicates == 8


def test_the_worker_producer_is_idempotent(settings: Settings, pipeline: Pipeline) -> None:
    signals_app = create_app(settings.replace(app_id=f"agent-test-{uuid.uuid4().hex[:6]}"),
                             pipeline)
    options = signals_app.app.producer._settings_extra()
    assert options["enable_idempotence"] is True and options["acks"] == "all"


def test_index_agent_flags_a_repost_and_forgets_a_deleted_item(
    settings: Settings, pipeline: Pipeline
) -> None:
    """Embedding records in (as enrich writes them), similarity signals out; a tombstone deletes."""
    from stream.core.outputs import EmbeddingRecord, serialise

    signals_app, sink = make_app(settings, pipeline)
    topics = settings.topics
    texts = ["The history of the Roman empire, episode one: Augustus",
             "Ten minute morning yoga for beginners",
             "the history of the roman empire - episode one: augustus #podcast"]
    vectors = pipeline.enricher.encoder.encode(texts)

    def record(i: int, content_id: str, vector: Any) -> Any:
        return serialise(EmbeddingRecord(f"e-{i}", content_id, "episode", 1_000 * i,
                                         "minilm", vector))

    first = [record(0, "ep-1", vectors[0]), record(1, "ep-2", vectors[1]),
             record(2, "ep-3", vectors[2])]
    later = [serialise(EmbeddingRecord("e-9", "ep-1", "", 0, "", None)),   # tombstone
             record(3, "ep-4", vectors[2])]

    async def scenario() -> None:
        async with signals_app.index_stage.test_context() as agent:
            for out in first:
                await agent.put(value=out.value, key=out.key, partition=0, wait=False)
            await wait_until(lambda: len(sink.records[topics.similar]) == 3)
            for out in later:
                await agent.put(value=out.value, key=out.key, partition=0, wait=False)
            await wait_until(lambda: len(sink.records[topics.similar]) == 4)

    asyncio.run(scenario())
    similar = [orjson.loads(r.value) for r in sink.records[topics.similar]]
    assert [r.key for r in sink.records[topics.similar]] == [b"ep-1", b"ep-2", b"ep-3", b"ep-4"]
    by_id = {s["content_id"]: s for s in similar}
    assert by_id["ep-1"]["near_duplicate"] is None
    repost = by_id["ep-3"]
    assert repost["near_duplicate"]["content_id"] == "ep-1"
    assert repost["flags"] == ["near_duplicate"]
    assert repost["related"][0]["content_id"] == "ep-1"
    assert by_id["ep-2"]["flags"] == []
    # ep-1 was deleted: the next copy points to ep-3 (the other copy), never to ep-1
    assert by_id["ep-4"]["near_duplicate"]["content_id"] == "ep-3"
    assert all(r["content_id"] != "ep-1" for r in by_id["ep-4"]["related"])
    assert signals_app.index is not None and len(signals_app.index) == 3
    assert by_id["ep-3"]["cluster"] == "ep-1" and by_id["ep-4"]["cluster"] == "ep-1"
    clusters = [orjson.loads(r.value) for r in sink.records[topics.clusters]]
    assert {r.key for r in sink.records[topics.clusters]} == {b"content_type=episode"}
    assert [(c["content_id"], c["cluster"], c["near_duplicate_of"], c["source"]["offset"])
            for c in clusters] == [("ep-1", "ep-1", None, 0), ("ep-2", "ep-2", None, 1),
                                   ("ep-3", "ep-1", "ep-1", 2), ("ep-4", "ep-1", "ep-3", 4)]


def cluster_item(i: int, ts_ms: int, cluster: str, of: str | None, source_partition: int,
                 offset: int) -> dict[str, Any]:
    return {"group": "content_type=comment", "event_id": f"e-{i}", "content_id": f"cm-{i}",
            "content_type": "comment", "event_time_ms": ts_ms, "cluster": cluster,
            "near_duplicate_of": of,
            "source": {"topic": "content.embeddings.v1", "partition": source_partition,
                       "offset": offset}}


def test_campaigns_agent_counts_a_burst_of_copies_per_window(
    settings: Settings, pipeline: Pipeline
) -> None:
    """Cluster records in (as the index agent writes them), one campaign window per window kind
    out when the stream has moved past it; a re-sent record counts once."""
    signals_app, sink = make_app(settings, pipeline)
    topics = settings.topics
    group = "content_type=comment"
    burst = [cluster_item(0, T0, "cm-0", None, 0, 0),
             *[cluster_item(i, T0 + i * 1000, "cm-0", "cm-0", i % 4, 10 + i)
               for i in range(1, 5)],
             cluster_item(7, T0 + 9000, "cm-7", None, 3, 30)]
    later = [cluster_item(900 + p, T0 + HOUR, f"cm-9{p}", None, p, 100) for p in range(4)]

    async def scenario() -> None:
        async with signals_app.campaigns.test_context() as agent:
            for record in [*burst, burst[2], *later]:
                await agent.put(value=orjson.dumps(record), key=group.encode(), partition=0)
            await wait_until(lambda: len(sink.records[topics.campaigns]) >= 6)

    asyncio.run(scenario())
    windows = [orjson.loads(r.value) for r in sink.records[topics.campaigns]]
    [tumbling] = [w for w in windows if w["window"]["kind"] == "tumbling"]
    assert (tumbling["count"], tumbling["near_duplicates"], tumbling["clusters"]) == (6, 4, 1)
    assert tumbling["top_clusters"] == [{"cluster": "cm-0", "near_duplicates": 4}]
    assert all(r.key == group.encode() for r in sink.records[topics.campaigns])
    assert signals_app.campaign_aggregator is not None
    assert signals_app.campaign_aggregator.duplicates == 1


def test_the_idle_timer_closes_the_windows_of_a_quiet_partition_without_a_record(
    settings: Settings, pipeline: Pipeline
) -> None:
    signals_app, sink = make_app(settings.replace(watermark_idle_s=0.2), pipeline)
    topics = settings.topics
    group = "content_type=episode|market=US"
    records = [enriched(i, T0 + i * 20_000, i % 4, i) for i in range(8)]   # 0 to 140 s
    table = signals_app.aggregator.store

    async def scenario() -> list[Any]:
        async with signals_app.aggregate.test_context() as agent:
            for record in records:
                await agent.put(value=orjson.dumps(record), key=group.encode(), partition=0)
            await wait_until(lambda: folded(table) == {"0": 4, "1": 5, "2": 6, "3": 7})
            before = list(sink.records[topics.windows])
            await asyncio.sleep(0.3)         # longer than the idle time: every source is idle
            closed = await close_idle(signals_app.idle_stages, {(topics.enriched, 0)}, sink,
                                      signals_app.metrics, _nothing_durable)
            assert closed == len(sink.records[topics.windows]) - len(before) > 0
            return before

    before = asyncio.run(scenario())
    windows = [orjson.loads(r.value) for r in sink.records[topics.windows]]
    tumbling = {w["window"]["start_ms"]: w["count"] for w in windows
                if w["window"]["kind"] == "tumbling"}
    # 60 s windows: 0-40 s (3) closed by the records (the watermark is the sources' minimum,
    # 80 s), 60-100 s (3) by the timer (the maximum, 140 s); 120-140 s stays open
    assert tumbling == {T0: 3, T0 + 60_000: 3}
    assert [w["window"]["start_ms"] for w in values(before)
            if w["window"]["kind"] == "tumbling"] == [T0]
    assert table["__watermark__|0"]["watermark"] == T0 + 140_000   # written through the table
    assert f"tumbling_60s|{group}|{T0 + 60_000}" not in table       # closed: forgotten
    assert table[f"tumbling_60s|{group}|{T0 + 120_000}"]["count"] == 2   # open: kept


def folded(table: Any) -> dict[str, int]:
    """The highest source offset per source partition that partition 0's state has folded."""
    state = table.get("__watermark__|0") or {"sources": {}}
    return {source: known["offset"] for source, known in state["sources"].items()}


async def _nothing_durable() -> None:
    return None


def values(records: list[Any]) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in records]


def test_a_cancelled_agent_finishes_its_batch_before_it_stops() -> None:
    # A SIGTERM stops agents by cancelling them, and take_events acks the batch on the way out:
    # the batch must be sent whole before the cancellation goes on.
    sent: list[int] = []

    async def batch() -> None:
        for n in range(3):
            await asyncio.sleep(0.02)
            sent.append(n)

    async def cancel_mid_batch() -> None:
        agent = asyncio.ensure_future(uncancelled(batch()))
        await asyncio.sleep(0.01)
        agent.cancel()
        with pytest.raises(asyncio.CancelledError):
            await agent

    asyncio.run(cancel_mid_batch())
    assert sent == [0, 1, 2]
