"""The window-total check of the failure tests (crash, scale-out): an input whose windows can be
recounted offline, the recount, and the comparison with what the workers emitted.

Layout (`windowed_inputs`): comments (their aggregation group does not depend on a model's label),
event i on input partition i % partitions at base + i/2 s, grouped by market (5, coprime with the
partition counts used, so every input partition feeds every group). Event times rise with the
offset in every input partition, so under the per-source watermark (with a long idle time) no
record is late, whatever the interleaving, the crash or the rebalance. Some events are malformed
or far in the future: dead letters. `closers`: one far-later event per input partition and group,
sent last: the watermark, the minimum over the input partitions, passes every window of the
events, so they all close, and no closer's window does.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from stream.connectors.kafka import producer
from stream.settings import Settings
from stream.windows.aggregator import WindowAggregator
from stream.windows.kinds import window_kinds
from tests.integration.helpers import values

MARKETS = ("US", "GB", "DE", "SE", "FR")
HOUR_MS = 3_600_000


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def comment(tag: str, i: int, ts_ms: int, market: str) -> dict[str, Any]:
    return {"event_id": f"{tag}-{i}", "event_type": "comment.created", "content_id": f"cm-{i}",
            "content_type": "comment", "event_time": iso(ts_ms), "market": market,
            "text": f"Comment number {i}: a thoughtful take on this week's episode"}


@dataclass
class WindowedInput:
    """What a test sends: (partition, key, value) triples, and the valid events among them."""

    tag: str
    partitions: int
    base_ms: int
    sends: list[tuple[int, bytes, bytes]] = field(default_factory=list)
    valid: list[dict[str, Any]] = field(default_factory=list)


def windowed_inputs(tag: str, count: int, partitions: int) -> WindowedInput:
    """`count` events as the module docstring says: every 50th (from 7) cut short
    (invalid_json), event 301 a day in the future (event_time_out_of_range), the rest valid."""
    now_ms = int(time.time() * 1000)
    base = (now_ms - 2 * HOUR_MS) // 60_000 * 60_000
    made = WindowedInput(tag, partitions, base)
    for i in range(count):
        event = comment(tag, i, base + i * 500, MARKETS[i % len(MARKETS)])
        if i % 50 == 7:
            value = orjson.dumps(event)[:-9]
        elif i == 301:
            value = orjson.dumps({**event, "event_time": iso(now_ms + 24 * HOUR_MS)})
        else:
            value = orjson.dumps(event)
            made.valid.append(event)
        made.sends.append((i % partitions, event["content_id"].encode(), value))
    return made


def closers(made: WindowedInput) -> list[tuple[int, bytes, bytes]]:
    """One event an hour after the first per input partition and group (valid, not counted)."""
    sends = []
    for p in range(made.partitions):
        for m, market in enumerate(MARKETS):
            event = comment(made.tag, 10_000 + p * 10 + m, made.base_ms + HOUR_MS, market)
            sends.append((p, event["content_id"].encode(), orjson.dumps(event)))
    return sends


def send(settings: Settings, topic: str, sends: list[tuple[int, bytes, bytes]]) -> None:
    """Each value to its partition, in order; returns once the broker has them all."""
    client = producer(settings)
    try:
        for partition, key, value in sends:
            client.send(topic, key=key, value=value, partition=partition)
        client.flush()
    finally:
        client.close()


def window_key(window: dict[str, Any]) -> tuple[str, str, int]:
    return (window["window"]["name"], window["group"], window["window"]["start_ms"])


def recount(settings: Settings, events: list[dict[str, Any]]) -> Counter[tuple[str, str, int]]:
    """Each event in each of its windows, with the project's own window kinds."""
    expected: Counter[tuple[str, str, int]] = Counter()
    for event in events:
        ts = int(datetime.fromisoformat(event["event_time"]).timestamp() * 1000)
        for kind in window_kinds(settings):
            for start in kind.starts(ts):
                expected[(kind.name, f"content_type=comment|market={event['market']}", start)] += 1
    return expected


def refold(settings: Settings, changelog: list[Any], enriched: list[Any],
           skipped: dict[str, str] | None = None) -> Counter[tuple[str, str, int]]:
    """Recover the window table from its changelog records, fold every enriched record into it
    with the worker's `WindowAggregator` (duplicates skipped by source offset), flush: counts.
    `skipped` (if given) gets the events none of whose records this fold counted (the
    recovered state may have): why the first was skipped or late, where it and the source's
    last record folded before it in that partition were."""
    skipped = {} if skipped is None else skipped
    store: dict[str, Any] = {}
    for record in sorted(changelog, key=lambda r: (r.partition, r.offset)):
        key = orjson.loads(record.key)
        if record.value is None:
            store.pop(key, None)
        else:
            store[key] = orjson.loads(record.value)
    aggregator = WindowAggregator(store, window_kinds(settings), settings.window_grace_s * 1000,
                                  sources=tuple(range(settings.partitions)))
    closed = []
    last: dict[tuple[int, str], str] = {}   # (enriched partition, source) → the last folded
    folded: set[str] = set()
    for record in sorted(enriched, key=lambda r: (r.partition, r.offset)):
        value = orjson.loads(record.value)
        before = aggregator.duplicates, aggregator.late_records
        closed += aggregator.update(value["group"], value, record.partition)
        source = f"{value['source']['partition']}:{value['source']['offset']}"
        here = f"source {source} at enriched {record.partition}:{record.offset}"
        side = (record.partition, str(value["source"]["partition"]))
        if (aggregator.duplicates, aggregator.late_records) != before:
            why = "duplicate" if aggregator.duplicates != before[0] else "late"
            skipped.setdefault(value["event_id"], f"{why}: {here}, after {last.get(side)}")
        else:
            last[side] = here
            folded.add(value["event_id"])
    closed += aggregator.flush()
    for event_id in folded:   # a repeat of a record folded here: not missing
        skipped.pop(event_id, None)
    return Counter({window_key(w): w["count"] for w in closed})


@dataclass(frozen=True)
class WindowCheck:
    counts: Counter[tuple[str, str, int]]   # what the workers emitted, by window key
    copies: int                             # windows emitted more than once (byte-identical)


def check_window_stage(settings: Settings, valid: list[dict[str, Any]], windows: list[Any],
                       enriched: list[Any], recovered: list[Any], what: str) -> WindowCheck:
    """The window stage: every window emitted twice is byte-identical, and the emitted totals
    are the recount of the valid events that reached content.enriched.v1 (`enriched`: all its
    records). If they are not, the same aggregator folds every enriched record offline over
    `recovered` (the window table's changelog records as the failure left them): if that gives
    the recount for every wrong window, the aggregator and the recovered state were right and
    Faust did not hand some records to the agent that took over (XFAIL naming it); otherwise
    the test fails."""
    emitted: dict[tuple[str, str, int], bytes] = {}
    copies = 0
    for record in windows:
        key = window_key(orjson.loads(record.value))
        copies += key in emitted
        assert emitted.setdefault(key, record.value) == record.value   # twice: byte-identical
    counts = Counter({k: orjson.loads(v)["count"] for k, v in emitted.items()})
    reached = {e["event_id"] for e in values(enriched)}
    want = recount(settings, [e for e in valid if e["event_id"] in reached])
    if counts != want:
        # the offline fold flushes every window at the end, the closers' too: those are not
        # in the recount (the workers never close them)
        skipped: dict[str, str] = {}
        refolded = {k: n for k, n in refold(settings, recovered, enriched, skipped).items()
                    if k in want}
        wrong = sorted(k for k in set(counts) | set(want) if counts[k] != want[k])
        differ = sorted(k for k in refolded if refolded[k] != want[k])
        assert refolded and not differ, \
            f"aggregator wrong: {[(k, refolded[k], want[k]) for k in differ[:5]]}; events " \
            f"skipped in the offline fold: {skipped_in(settings, differ, valid, skipped)}"
        assert set(wrong) <= set(refolded), \
            f"windows wrong that the offline fold did not emit: {set(wrong) - set(refolded)}"
        pytest.xfail(f"faust did not deliver every content.enriched.v1 record to the aggregate "
                     f"agent after {what}: {len(wrong)} windows wrong (e.g. emitted/recount "
                     f"{[(k, counts[k], want[k]) for k in wrong[:3]]}), the offline fold of the "
                     "same records from the recovered state matched the recount (README "
                     "'Windows')")
    return WindowCheck(counts, copies)


def skipped_in(settings: Settings, windows: list[tuple[str, str, int]],
               valid: list[dict[str, Any]], skipped: dict[str, str]) -> dict[str, str]:
    """Of the events in `windows`, those the offline fold skipped, and why (`refold`): the
    first ten, those skipped after a later record of their source first (those with nothing
    folded before them were mostly counted in the recovered state already)."""
    keys = set(windows)
    found = [(e["event_id"], skipped[e["event_id"]]) for e in valid
             if e["event_id"] in skipped and set(recount(settings, [e])) & keys]
    found.sort(key=lambda item: item[1].endswith("after None"))
    return dict(found[:10])
