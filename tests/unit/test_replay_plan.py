"""The pure part of replay: argument checks, identity (fingerprint, replay id, sink topics),
offset ranges, partition interleaving, the rate limiter and the checkpoint file."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.errors import ConfigError, InputFileError
from stream.models.manifest import load_manifest
from stream.replay.control import TokenBucket
from stream.replay.plan import (
    ReplayRequest,
    SinkSpec,
    SourceSpec,
    clamp_range,
    default_replay_id,
    fingerprint,
    parse_model_overrides,
    parse_partitions,
    parse_time,
    plan_replay,
    replay_topics,
    resolve_versions,
    shaping_options,
    version_tag,
)
from stream.replay.sources import pick_partition
from stream.replay.state import Checkpoint, ReplayCounts, load_checkpoint, save_checkpoint
from stream.settings import Settings

T0 = parse_time("2026-01-05T10:00:00Z")


def test_times_need_an_explicit_offset() -> None:
    assert parse_time("2026-01-05T10:00:00Z") == 1_767_607_200_000
    assert parse_time("2026-01-05T11:00:00+01:00") == 1_767_607_200_000
    with pytest.raises(ValueError, match="no UTC offset"):
        parse_time("2026-01-05T10:00:00")
    with pytest.raises(ValueError, match="not an ISO-8601 time"):
        parse_time("yesterday")


def test_partitions_and_model_overrides_parse() -> None:
    assert parse_partitions("3,0, 1,3") == (0, 1, 3)
    for bad in ("a,b", "-1", ","):
        with pytest.raises(ValueError):
            parse_partitions(bad)
    assert parse_model_overrides(["embedding = v2", "language=l1"]) == {
        "embedding": "v2", "language": "l1"}
    with pytest.raises(ConfigError, match="TASK=VERSION"):
        parse_model_overrides(["embedding"])


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        (SourceSpec(), "exactly one source"),
        (SourceSpec(topic="t", file=Path("f")), "exactly one source"),
        (SourceSpec(topic="t", from_offset=10, to_offset=5), "--from-offset 10 is after"),
        (SourceSpec(topic="t", from_offset=5, to_offset=5), "empty range"),
        (SourceSpec(topic="t", from_time_ms=T0 + 1, to_time_ms=T0), "--from-time"),
        (SourceSpec(topic="t", from_offset=1, to_time_ms=T0), "not both"),
        (SourceSpec(file=Path("f"), from_time_ms=T0), "need a topic"),
        (SourceSpec(file=Path("f"), partitions=(0,)), "applies to a topic"),
        (SourceSpec(file=Path("f"), from_offset=0), "starting at 1"),
    ],
)
def test_bad_sources_are_refused_before_any_io(spec: SourceSpec, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        spec.check()
    assert fragment in str(info.value)


def test_sink_checks(tmp_path: Path) -> None:
    source = SourceSpec(file=tmp_path / "in.jsonl")
    with pytest.raises(ConfigError, match="is the input file"):
        SinkSpec(output=tmp_path / "in.jsonl").check(source)
    with pytest.raises(ConfigError, match="--to-live"):
        SinkSpec(output=tmp_path / "out.jsonl", to_live=True).check(source)


def test_model_versions_come_from_the_manifest(settings: Settings) -> None:
    manifest = load_manifest(settings.manifest_path)
    assert resolve_versions(manifest, {}) == dict(manifest.active)
    with pytest.raises(ConfigError, match="unknown model task 'nosuchtask'"):
        resolve_versions(manifest, {"nosuchtask": "v1"})
    with pytest.raises(ConfigError, match="unknown embedding model version 'nope'"):
        resolve_versions(manifest, {"embedding": "nope"})


def test_the_replay_id_is_a_function_of_what_shapes_the_records(settings: Settings) -> None:
    source = SourceSpec(topic="content.events.v1", from_offset=0, to_offset=100)
    versions = {"embedding": "e1", "language": "l1"}
    options = shaping_options(settings, aggregate=False)
    base = fingerprint(source, versions, options)
    assert base == fingerprint(SourceSpec(topic="content.events.v1", from_offset=0,
                                          to_offset=100), dict(versions), dict(options))
    changed = [
        fingerprint(SourceSpec(topic="content.events.v1", from_offset=0, to_offset=101),
                    versions, options),
        fingerprint(source, {**versions, "embedding": "e2"}, options),
        fingerprint(source, versions, shaping_options(settings.replace(batch_max_size=7), False)),
        fingerprint(source, versions, shaping_options(settings, aggregate=True)),
    ]
    assert base not in changed and len(set(changed)) == len(changed)
    assert default_replay_id(base) == "replay-" + base[:16]


def test_sink_topics_are_versioned_unless_live(settings: Settings) -> None:
    versions = {"embedding": "minilm-l6-v2-int8-v1", "language": "langid-charngram-v1"}
    tag = version_tag(versions)
    assert tag.startswith("minilm-l6-v2-int8-v1-") and len(tag) == len("minilm-l6-v2-int8-v1-") + 8
    assert version_tag({**versions, "language": "other"}) != tag
    assert version_tag({"embedding": "a/b c"}).startswith("a_b_c-")
    topics = replay_topics(settings.replace(topic_prefix="stg."), versions, to_live=False)
    assert topics.signals == f"stg.content.signals.replay.{tag}"
    assert topics.dlq == f"stg.content.events.dlq.replay.{tag}"
    assert replay_topics(settings, versions, to_live=True).signals == "content.signals.v1"


@pytest.mark.parametrize(
    ("begin", "end", "low", "high", "expected"),
    [(0, 100, None, None, (0, 100)), (10, 100, 0, 50, (10, 50)), (0, 100, 90, 200, (90, 100)),
     (0, 100, 150, 200, (100, 100)), (50, 100, 0, 20, (50, 50))],
)
def test_ranges_are_clamped_to_what_the_partition_holds(
    begin: int, end: int, low: int | None, high: int | None, expected: tuple[int, int]
) -> None:
    assert clamp_range(begin, end, low, high) == expected


def test_the_next_chunk_comes_from_the_partition_with_the_oldest_head() -> None:
    assert pick_partition({0: 500, 1: 200, 2: 300}) == 1
    assert pick_partition({0: 200, 1: 200}) == 0          # ties: the lower partition
    assert pick_partition({0: 100, 1: None}) == 1         # an exhausted one is finished first


@given(rate=st.floats(1, 1000), sizes=st.lists(st.integers(1, 200), min_size=1, max_size=60),
       gaps=st.lists(st.floats(0, 2), min_size=60, max_size=60))
def test_the_token_bucket_never_exceeds_burst_plus_rate_times_time(
    rate: float, sizes: list[int], gaps: list[float]
) -> None:
    bucket, now, taken = TokenBucket.per_second(rate), 0.0, 0
    for size, gap in zip(sizes, gaps, strict=False):
        now += gap                                  # the caller did other work meanwhile
        now += bucket.delay(size, now)              # then sleeps as told and uses `size` events
        taken += size
        assert taken <= bucket.burst + rate * now + 1e-6 * taken


def test_the_token_bucket_paces_a_steady_stream() -> None:
    bucket, now = TokenBucket.per_second(100), 0.0
    for _ in range(50):                     # 50 batches of 20 = 1000 events at 100/s
        now += bucket.delay(20, now)
    assert 8.9 < now < 9.1                  # the first 100 are the burst


def test_checkpoints_round_trip_and_are_replaced_atomically(tmp_path: Path) -> None:
    path = tmp_path / "replay.ckpt"
    assert load_checkpoint(path) is None
    checkpoint = Checkpoint("f" * 64, "replay-x", "file out.jsonl", {0: (0, 10), 1: (5, 9)},
                            {0: 4, 1: 9}, ReplayCounts(read=8, signals=7, dead_letters=1),
                            {"signals": 123}, {"__watermark__|0": 5})
    save_checkpoint(path, checkpoint)
    assert load_checkpoint(path) == checkpoint
    assert [p.name for p in tmp_path.iterdir()] == ["replay.ckpt"]   # no temporary left over
    assert not checkpoint.read_all and checkpoint.remaining() == {0: (4, 10), 1: (9, 9)}
    with pytest.raises(ConfigError, match="belongs to another replay"):
        checkpoint.ensure_matches(path, "0" * 64, "replay-x", "file out.jsonl")
    with pytest.raises(ConfigError, match=r"written for the sink file out\.jsonl"):
        checkpoint.ensure_matches(path, "f" * 64, "replay-x", "file other.jsonl")
    path.write_text("{not json")
    with pytest.raises(InputFileError, match="is not a replay checkpoint"):
        load_checkpoint(path)


def test_the_language_tier_is_part_of_the_replay_identity(settings: Settings) -> None:
    manifest = load_manifest(settings.manifest_path)
    assert manifest.language_tier is not None          # the shipped manifest names one
    request = ReplayRequest(SourceSpec(topic="content.events.v1", from_offset=0, to_offset=10))
    on, off = (plan_replay(request, settings.replace(language_tier=tier)) for tier in (True, False))
    tier = manifest.tier_versions(on.versions["embedding"])
    assert tier["embedding"] == manifest.language_tier and len(tier) > 1   # encoder and heads
    assert on.replay_id != off.replay_id               # a tier change is another replay
    assert on.topics is not None and off.topics is not None
    assert on.topics.signals != off.topics.signals
    assert on.versions == off.versions                 # the champions are the same
    assert manifest.tier_versions(manifest.language_tier) == {}   # the tier's own encoder
    assert manifest.tier_versions(on.versions["embedding"], enabled=False) == {}


def test_a_cascade_is_part_of_the_replay_identity(settings: Settings) -> None:
    request = ReplayRequest(SourceSpec(topic="content.events.v1", from_offset=0, to_offset=10))
    cascade, fast = (plan_replay(request, settings.replace(profile=name))
                     for name in ("cascade", "fast"))
    assert cascade.versions == fast.versions           # the same cheap models ...
    assert cascade.replay_id != fast.replay_id         # ... but the escalations change records
