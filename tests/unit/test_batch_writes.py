"""`BatchWrites`: a window stage's table as a batch sees it, and `fold_batch` over it.

`ChangelogTable` stands in for a Faust table (its ``data`` and ``send_changelog``, the two
things `BatchWrites` touches) and records what reached the changelog.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import structlog.testing
from hypothesis import given
from hypothesis import strategies as st

from stream.core.outputs import Record
from stream.windows.aggregator import WindowAggregator
from stream.windows.kinds import TumblingWindow
from stream.worker.metrics import WorkerMetrics
from stream.worker.sinks import ListSink
from stream.worker.windowing import BatchWrites, WindowOutput, WindowStage, fold_batch


class ChangelogTable:
    def __init__(self, data: dict[str, Any] | None = None) -> None:
        self.data: dict[str, Any] = dict(data or {})
        self.changelog: list[tuple[int, str, Any]] = []

    def send_changelog(self, partition: int, key: str, value: Any,
                       value_serializer: str | None = None) -> None:
        self.changelog.append((partition, key, value))


def test_reads_see_the_pending_writes_and_the_table_sees_them_once_at_commit() -> None:
    table = ChangelogTable({"a": 1, "b": 2})
    writes = BatchWrites(table)
    writes.partition = 3
    writes["a"] = 10
    writes["a"] = 11
    writes["c"] = 30
    writes.partition = 1
    del writes["b"]
    assert (writes["a"], writes.get("b"), writes["c"]) == (11, None, 30)
    assert sorted(writes) == ["a", "c"] and len(writes) == 2
    assert table.data == {"a": 1, "b": 2} and table.changelog == []   # nothing yet
    writes.commit()
    assert table.data == {"a": 11, "c": 30}
    assert sorted(table.changelog) == [(1, "b", None), (3, "a", 11), (3, "c", 30)]
    assert writes.pending == {}


def test_discard_leaves_the_table_as_it_was_and_deleting_a_missing_key_raises() -> None:
    table = ChangelogTable({"a": 1})
    writes = BatchWrites(table)
    writes["a"] = 2
    writes.discard()
    assert writes["a"] == 1 and table.changelog == []
    with pytest.raises(KeyError):
        del writes["zz"]


@given(st.lists(st.tuples(st.sampled_from("abcd"), st.integers(0, 3), st.integers(-1, 9)),
                max_size=30))
def test_a_committed_batch_equals_the_same_writes_made_one_by_one(
        ops: list[tuple[str, int, int]]) -> None:
    start = {"a": 0, "b": 1}
    table, direct = ChangelogTable(start), dict(start)
    writes = BatchWrites(table)
    last: dict[str, tuple[int, int | None]] = {}
    for key, partition, value in ops:      # value -1: delete the key (if it is there)
        writes.partition = partition
        if value < 0:
            if key in direct:
                del writes[key], direct[key]
                last[key] = (partition, None)
        else:
            writes[key] = direct[key] = value
            last[key] = (partition, value)
    assert dict(writes.items()) == direct
    writes.commit()
    assert table.data == direct
    sent = {key: (partition, value) for partition, key, value in table.changelog}
    assert len(table.changelog) == len(sent)       # one changelog record per key
    assert sent == {k: v for k, v in last.items() if v[1] is not None or k in start}


class FailingSink(ListSink):
    async def send(self, topic: str, record: Record) -> None:
        raise OSError("broker gone")


def stage_over(table: ChangelogTable) -> WindowStage:
    writes = BatchWrites(table)
    aggregator = WindowAggregator(writes, (TumblingWindow(60_000),), 0)
    return WindowStage(aggregator, WindowOutput("aggregate", "windows", "group", "closed"),
                       writes, "enriched")


def enriched(n: int, ts_ms: int, partition: int = 0) -> dict[str, Any]:
    return {"event_id": f"e-{n}", "event_type": "content.published", "group": "g",
            "event_time_ms": ts_ms, "signals": {}, "flags": [],
            "source": {"topic": "events", "partition": partition, "offset": n}}


def test_a_batch_writes_each_key_once_and_its_states_after_its_windows_are_durable() -> None:
    table, sink, durable = ChangelogTable(), ListSink(), []
    stage = stage_over(table)

    async def flush() -> None:
        durable.append(len(table.changelog))      # what the table had when the flush ran

    batch = [(enriched(n, n * 1000), 0) for n in range(10)] + [(enriched(10, 61_000), 0)]
    asyncio.run(fold_batch(stage, batch, sink, WorkerMetrics.create(), flush))
    [window] = sink.records["windows"]
    assert b'"count":10' in window.value
    # 11 records, 2 changelog records: the open window as soon as it is folded (before any
    # send, as a per-record fold wrote it), the partition state after the flush; the window
    # that opened and closed within the batch never reaches the table
    assert durable == [1]
    assert [key for _, key, _ in table.changelog] == ["tumbling_60s|g|60000", "__watermark__|0"]
    assert "tumbling_60s|g|0" not in table.data and table.data["tumbling_60s|g|60000"]["count"] == 1


def test_a_batch_whose_windows_cannot_be_sent_keeps_them_and_counts_nothing_twice() -> None:
    table = ChangelogTable()
    stage = stage_over(table)
    batch = [(enriched(n, n * 1000), 0) for n in range(3)] + [(enriched(3, 61_000), 0)]
    with pytest.raises(OSError):
        asyncio.run(fold_batch(stage, batch, FailingSink(), WorkerMetrics.create(), _nothing))
    # the open window's fold is in the table; the state and the closed window are not
    assert list(table.data) == ["tumbling_60s|g|60000"]
    good = ListSink()                              # the batch again
    asyncio.run(fold_batch(stage, batch, good, WorkerMetrics.create(), _nothing))
    assert [b'"count":3' in r.value for r in good.records["windows"]] == [True]
    assert table.data["tumbling_60s|g|60000"]["count"] == 1     # its record was not re-counted


def test_a_record_that_cannot_be_folded_fails_its_batch_without_touching_the_table() -> None:
    table = ChangelogTable()
    stage = stage_over(table)
    broken = {k: v for k, v in enriched(2, 2000).items() if k != "group"}
    with pytest.raises(KeyError):
        asyncio.run(fold_batch(stage, [(enriched(1, 1000), 0), (broken, 0)], ListSink(),
                               WorkerMetrics.create(), _nothing))
    assert table.data == {} and stage.writes.pending == {}


async def _nothing() -> None:
    return None


def test_a_batch_of_late_records_is_one_warning_naming_the_first_few() -> None:
    table, sink = ChangelogTable(), ListSink()
    writes = BatchWrites(table)
    aggregator = WindowAggregator(writes, (TumblingWindow(60_000),), 0)
    stage = WindowStage(aggregator, WindowOutput("aggregate", "windows", "group", "closed",
                                                 late_topic="late", report_late=True),
                        writes, "enriched")
    # a record at 5 min moves the watermark past the first window; 12 stragglers follow
    batch = [(enriched(0, 300_000), 0)] + [(enriched(n, n * 1000), 0) for n in range(1, 13)]
    with structlog.testing.capture_logs() as logs:
        asyncio.run(fold_batch(stage, batch, sink, WorkerMetrics.create(), _nothing))
    [line] = [entry for entry in logs if "late" in entry["event"]]
    assert line["event"] == "late_records" and line["count"] == 12
    assert line["event_ids"] == [f"e-{n}" for n in range(1, 6)]
    assert line["missed"] == ["tumbling_60s"] and line["watermark_ms"] == 300_000
    assert len(sink.records["late"]) == 12 == aggregator.late_records     # each still sent
