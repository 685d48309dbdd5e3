"""The output contracts in schemas/: every record the code writes validates against its schema.

Records come from the real code paths (`process_batch` with the real models, a challenger, a
replay-style pipeline and a real file-to-file `signals replay`, the real `WindowAggregator` with
the signal and model-eval folders) and are validated as they go on the wire (orjson bytes, parsed
back). The schemas themselves are checked against the draft-07 meta-schema, against the topic list
in `stream.core.topics.REGISTRY`, and for actually rejecting wrong records.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import fastjsonschema
import orjson
import pytest

from stream.core.builder import build_pipeline
from stream.core.outputs import Record, ShadowRecord, Signal, dumps, serialise
from stream.core.pipeline import BatchOutput, Pipeline, dead_letter, process_batch
from stream.core.records import Position, RawMessage
from stream.core.topics import REGISTRY, Topics
from stream.errors import Rejection, RejectReason
from stream.models.manifest import load_manifest
from stream.models.shadow import eval_folder, load_references
from stream.paths import CHECKOUT
from stream.replay.plan import ReplayRequest, SinkSpec, SourceSpec
from stream.replay.run import run_replay
from stream.replay.sinks import output_paths
from stream.settings import Settings
from stream.windows.aggregator import WindowAggregator
from stream.windows.kinds import TumblingWindow, window_kinds
from tests.schemas import SCHEMAS, assert_valid, schema, validator

GOLDEN = CHECKOUT / "tests" / "golden" / "events.jsonl"
ID_BASE = "https://content-signals.example/schemas/"
TOPICS = Topics()
OUTPUT_TOPICS = (TOPICS.signals, TOPICS.enriched, TOPICS.windows, TOPICS.dlq, TOPICS.shadow,
                 TOPICS.model_eval, TOPICS.late, TOPICS.embeddings, TOPICS.similar,
                 TOPICS.clusters, TOPICS.campaigns)
CHALLENGERS = "sentiment=sentiment-minilm-mlp-v1,language=langid-charngram-v1"
RUN_ID = "replay-0123456789abcdef"

# The draft-07 meta-schema (http://json-schema.org/draft-07/schema#), inlined: no network in tests.
DRAFT07: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "$id": "http://json-schema.org/draft-07/schema#",
    "title": "Core schema meta-schema",
    "definitions": {
        "schemaArray": {"type": "array", "minItems": 1, "items": {"$ref": "#"}},
        "nonNegativeInteger": {"type": "integer", "minimum": 0},
        "nonNegativeIntegerDefault0": {
            "allOf": [{"$ref": "#/definitions/nonNegativeInteger"}, {"default": 0}]},
        "simpleTypes": {
            "enum": ["array", "boolean", "integer", "null", "number", "object", "string"]},
        "stringArray": {"type": "array", "items": {"type": "string"}, "uniqueItems": True,
                        "default": []},
    },
    "type": ["object", "boolean"],
    "properties": {
        "$id": {"type": "string", "format": "uri-reference"},
        "$schema": {"type": "string", "format": "uri"},
        "$ref": {"type": "string", "format": "uri-reference"},
        "$comment": {"type": "string"},
        "title": {"type": "string"},
        "description": {"type": "string"},
        "default": True,
        "readOnly": {"type": "boolean", "default": False},
        "writeOnly": {"type": "boolean", "default": False},
        "examples": {"type": "array", "items": True},
        "multipleOf": {"type": "number", "exclusiveMinimum": 0},
        "maximum": {"type": "number"},
        "exclusiveMaximum": {"type": "number"},
        "minimum": {"type": "number"},
        "exclusiveMinimum": {"type": "number"},
        "maxLength": {"$ref": "#/definitions/nonNegativeInteger"},
        "minLength": {"$ref": "#/definitions/nonNegativeIntegerDefault0"},
        "pattern": {"type": "string", "format": "regex"},
        "additionalItems": {"$ref": "#"},
        "items": {"anyOf": [{"$ref": "#"}, {"$ref": "#/definitions/schemaArray"}],
                  "default": True},
        "maxItems": {"$ref": "#/definitions/nonNegativeInteger"},
        "minItems": {"$ref": "#/definitions/nonNegativeIntegerDefault0"},
        "uniqueItems": {"type": "boolean", "default": False},
        "contains": {"$ref": "#"},
        "maxProperties": {"$ref": "#/definitions/nonNegativeInteger"},
        "minProperties": {"$ref": "#/definitions/nonNegativeIntegerDefault0"},
        "required": {"$ref": "#/definitions/stringArray"},
        "additionalProperties": {"$ref": "#"},
        "definitions": {"type": "object", "additionalProperties": {"$ref": "#"}, "default": {}},
        "properties": {"type": "object", "additionalProperties": {"$ref": "#"}, "default": {}},
        "patternProperties": {"type": "object", "additionalProperties": {"$ref": "#"},
                              "propertyNames": {"format": "regex"}, "default": {}},
        "dependencies": {"type": "object", "additionalProperties": {
            "anyOf": [{"$ref": "#"}, {"$ref": "#/definitions/stringArray"}]}},
        "propertyNames": {"$ref": "#"},
        "const": True,
        "enum": {"type": "array", "items": True},
        "type": {"anyOf": [
            {"$ref": "#/definitions/simpleTypes"},
            {"type": "array", "items": {"$ref": "#/definitions/simpleTypes"}, "minItems": 1,
             "uniqueItems": True}]},
        "format": {"type": "string"},
        "contentMediaType": {"type": "string"},
        "contentEncoding": {"type": "string"},
        "if": {"$ref": "#"},
        "then": {"$ref": "#"},
        "else": {"$ref": "#"},
        "allOf": {"$ref": "#/definitions/schemaArray"},
        "anyOf": {"$ref": "#/definitions/schemaArray"},
        "oneOf": {"$ref": "#/definitions/schemaArray"},
        "not": {"$ref": "#"},
    },
    "default": True,
}
KEYWORDS = frozenset(DRAFT07["properties"])
# Keywords whose value is one subschema / a list of subschemas / a name → subschema map.
ONE_SCHEMA = ("additionalItems", "additionalProperties", "contains", "propertyNames", "if", "then",
              "else", "not", "items")
SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "items")
SCHEMA_MAPS = ("properties", "patternProperties", "definitions")


def values(records: Sequence[Record]) -> list[dict[str, Any]]:
    """The records' values as a sink writes them, read back."""
    return [orjson.loads(serialise(r).value) for r in records]


# ---------------------------------------------------------------------------------------------
# Inputs: the golden set, a few valid edge cases, and every kind of malformed message


def golden_events() -> list[bytes]:
    rows = [orjson.loads(line) for line in GOLDEN.read_bytes().splitlines() if line.strip()]
    return [orjson.dumps({k: v for k, v in row.items() if k != "expected"}) for row in rows]


def edge_events() -> list[bytes]:
    """Valid events that take the less common branches of the record builders."""
    return [
        orjson.dumps({"event_id": "x-deleted", "event_type": "content.deleted",
                      "content_id": "sh-gone", "content_type": "show",
                      "event_time": "2026-10-01T01:00:00Z"}),                # no text, no market
        orjson.dumps({"event_id": "x-comment", "event_type": "comment.created",
                      "content_id": "cm-1", "content_type": "comment",
                      "event_time": "2026-10-01T01:00:05.250+02:00",
                      "text": "Loved this episode, thanks!"}),                 # market → ZZ group
        orjson.dumps({"event_id": "x-track", "event_type": "content.updated",
                      "content_id": "tr-1", "content_type": "track", "creator_id": "cr-1",
                      "event_time": "2026-10-01T01:00:10Z", "title": "Midnight Drive",
                      "market": "SE", "tags": ["synthwave"], "language": "en"}),
        orjson.dumps({"event_id": "x-de", "event_type": "content.published",
                      "content_id": "sh-de", "content_type": "show",
                      "event_time": "2026-10-01T01:00:20Z", "market": "DE",
                      "title": "Zeitgeschichte kompakt",
                      "description": "Jede Woche erklären wir ein Kapitel der deutschen "
                                     "Geschichte in zwanzig Minuten."}),    # unreliable heads
    ]


def malformed_messages(settings: Settings) -> dict[str, bytes | None]:
    """Message value → the reject reason it must produce."""
    ok = orjson.loads(golden_events()[0])
    return {
        "invalid_json": b'{"event_id": "broken", ',
        "invalid_json:array": b"[1, 2, 3]",
        "tombstone": None,
        "schema_violation:duplicate_key": orjson.dumps(ok)[:-1] + b', "title": "again"}',
        "invalid_utf8": b'{"event_id": "\xff\xfe"}',
        "schema_violation:missing": orjson.dumps({k: v for k, v in ok.items()
                                                  if k != "event_id"}),
        "schema_violation:content_type": orjson.dumps({**ok, "content_type": "movie"}),
        "schema_violation:oversized_text": orjson.dumps({**ok, "description": "x " * 10_001}),
        "too_large": orjson.dumps({**ok, "description": "y" * settings.max_event_bytes}),
        "missing_text": orjson.dumps({**ok, "title": " ", "description": ""}),
        "invalid_event_time": orjson.dumps({**ok, "event_time": "2026-02-30T10:00:00Z"}),
    }


def kafka_messages(settings: Settings) -> list[RawMessage]:
    """Golden + edge + malformed values as the worker reads them; some without key/timestamp."""
    values_ = [*golden_events(), *edge_events(), *malformed_messages(settings).values()]
    return [RawMessage(value=v, position=Position(TOPICS.events, i % 4, 1000 + i),
                       key=None if i % 7 == 0 else f"key-{i}".encode(),
                       timestamp_ms=None if i % 5 == 0 else 1_790_000_000_000 + i)
            for i, v in enumerate(values_)]


# ---------------------------------------------------------------------------------------------
# Records, produced once per module (the models are loaded once per session by conftest)


@pytest.fixture(scope="module")
def shadow_pipeline(settings: Settings) -> Pipeline:
    """The worker's pipeline with challengers: a head (sentiment) and the language model."""
    return build_pipeline(settings.replace(challengers=CHALLENGERS))


@pytest.fixture(scope="module")
def live(shadow_pipeline: Pipeline, settings: Settings) -> BatchOutput:
    return process_batch(shadow_pipeline, kafka_messages(settings))


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory, settings: Settings) -> dict[str, Any]:
    """A real file-to-file `signals replay --aggregate` of the same inputs."""
    folder = tmp_path_factory.mktemp("replay")
    source, output = folder / "events.jsonl", folder / "out.jsonl"
    lines = [v for v in (*golden_events(), *edge_events(), *malformed_messages(settings).values())
             if v is not None]
    source.write_bytes(b"\n".join(lines) + b"\n")
    request = ReplayRequest(source=SourceSpec(file=source), sink=SinkSpec(output=output),
                            aggregate=True, replay_id=RUN_ID, progress=False)
    run_replay(request, settings.replace(batch_max_size=64))
    return {kind: [orjson.loads(line) for line in path.read_bytes().splitlines()]
            for kind, path in output_paths(output).items()}


def signal_windows(settings: Settings, enriched: list[dict[str, Any]]) -> list[dict[str, Any]]:
    aggregator = WindowAggregator({}, window_kinds(settings), settings.window_grace_s * 1000)
    closed: list[dict[str, Any]] = []
    for i, record in enumerate(enriched):
        closed += aggregator.update(record["group"], record, partition=i % 2)
    return [orjson.loads(dumps(w)) for w in closed + aggregator.flush()]


def eval_windows(settings: Settings, shadow: list[dict[str, Any]]) -> list[dict[str, Any]]:
    folder = eval_folder(load_references(load_manifest(settings.manifest_path)))
    size = settings.model_eval_window_s * 1000
    aggregator = WindowAggregator({}, (TumblingWindow(size),), settings.window_grace_s * 1000,
                                  folder=folder)
    closed: list[dict[str, Any]] = []
    for record in shadow:
        closed += aggregator.update(record["task"], record, partition=0)
    return [orjson.loads(dumps(w)) for w in closed + aggregator.flush()]


# ---------------------------------------------------------------------------------------------
# The live worker's records


def test_live_signal_records_match_the_schema(live: BatchOutput) -> None:
    signals = values(live.signals)
    assert_valid(TOPICS.signals, signals)
    assert len(signals) == len(golden_events()) + len(edge_events())
    assert all("processing" in s and "replay_id" not in s for s in signals)
    # the records exercised the optional and nullable parts of the schema
    assert any(s["processing"]["end_to_end_ms"] is None for s in signals)
    assert any(s["market"] is None for s in signals)
    deleted = next(s for s in signals if s["event_type"] == "content.deleted")
    assert deleted["signals"] == {} and deleted["models"] == {} and "embedding" not in deleted
    task_signals = [t for s in signals for t in s["signals"].values()]
    assert any(t.get("reliable") is False for t in task_signals)
    assert any(t["label"] == "none" for t in task_signals)          # multi-label, nothing flagged
    assert any(s["flags"] for s in signals)


def test_live_enriched_records_match_the_schema(live: BatchOutput) -> None:
    enriched = values(live.enriched)
    assert_valid(TOPICS.enriched, enriched)
    assert [r.key.decode() for r in live.enriched] == [e["group"] for e in enriched]
    groups = {e["group"] for e in enriched}
    assert "content_type=comment|market=ZZ" in groups and "topic=unknown|market=US" in groups
    assert any(g.startswith("topic=") and g.endswith("|market=DE") and "unknown" not in g
               for g in groups)   # German items get a topic from the language tier
    assert any(e["creator_id"] is None for e in enriched)


def test_live_dead_letters_match_the_schema(live: BatchOutput, settings: Settings) -> None:
    letters = values(live.dead_letters)
    assert_valid(TOPICS.dlq, letters)
    expected = sorted(reason.split(":")[0] for reason in malformed_messages(settings))
    assert sorted(d["error"]["class"] for d in letters) == expected
    assert all("failed_at" in d and "replay_id" not in d for d in letters)
    assert any(d["original"]["value_utf8"] is None for d in letters)   # the invalid UTF-8 one
    assert any(d["original"]["key_b64"] is None for d in letters)
    assert any(d["source"]["timestamp_ms"] is None for d in letters)


@pytest.mark.parametrize("run_id", [None, RUN_ID])
def test_a_dead_letter_of_every_reject_reason_matches_the_schema(
    shadow_pipeline: Pipeline, run_id: str | None
) -> None:
    """Including processing_error, which only a failing model produces in a batch."""
    pipeline = dataclasses.replace(shadow_pipeline, run_id=run_id,
                                   include_processing=run_id is None)
    message = RawMessage(b'{"event_id": "e"}', Position(TOPICS.events, 2, 7), key=b"k",
                         timestamp_ms=1)
    letters = values([dead_letter(message, Rejection(reason, f"because {reason}"), pipeline)
                      for reason in RejectReason])
    assert_valid(TOPICS.dlq, letters)
    assert_valid(TOPICS.dlq, values([dead_letter(message, Rejection(
        RejectReason.PROCESSING, "RuntimeError: boom"))]))        # no pipeline given
    huge = RawMessage(b"z" * (3 * 1024 * 1024), Position(TOPICS.events, 0, 9))
    assert_valid(TOPICS.dlq, values([dead_letter(huge, Rejection(RejectReason.TOO_LARGE, "big"),
                                                 pipeline)]))    # described, not copied


def test_embedding_records_and_similar_signals_match_the_schemas(live: BatchOutput) -> None:
    """The enrich agent's compacted log and the index agent's signals, cluster records and the
    campaign windows folded from them, from the real records."""
    from stream.core.outputs import EmbeddingRecord
    from stream.similarity.campaigns import CAMPAIGN_FOLDER, index_with_clusters
    from stream.similarity.exact import ExactIndex

    vectors = [r for r in live.embeddings if not r.is_tombstone]
    assert_valid(TOPICS.embeddings, values(vectors))
    tombstones = [r for r in live.embeddings if r.is_tombstone]
    assert tombstones and all(serialise(r).value is None for r in tombstones)
    back = [EmbeddingRecord.from_message(r.key, serialise(r).value) for r in live.embeddings]
    assert [(r.content_id, r.is_tombstone) for r in back] == [
        (r.content_id, r.is_tombstone) for r in live.embeddings]
    positions = [Position(TOPICS.embeddings, 0, i) for i in range(len(back))]
    similar, clusters = index_with_clusters(ExactIndex(), list(zip(back, positions, strict=True)),
                                            threshold=0.9, related_k=3)
    records = values(similar)
    assert_valid(TOPICS.similar, records)
    assert any(r["related"] for r in records) and any(r["near_duplicate"] for r in records)
    assert records[0]["near_duplicate"] is None     # the first item has nothing before it
    assert any(r["cluster"] != r["content_id"] for r in records)
    cluster_values = values(clusters)
    assert_valid(TOPICS.clusters, cluster_values)
    aggregator = WindowAggregator({}, (TumblingWindow(60_000),), 0, folder=CAMPAIGN_FOLDER)
    closed: list[dict[str, Any]] = []
    for record in cluster_values:
        closed += aggregator.update(record["group"], record, partition=0)
    campaigns = [orjson.loads(dumps(w)) for w in closed + aggregator.flush()]
    assert_valid(TOPICS.campaigns, campaigns)
    assert any(w["top_clusters"] for w in campaigns)


def test_shadow_records_match_the_schema(live: BatchOutput) -> None:
    shadow = values(live.shadow)
    assert_valid(TOPICS.shadow, shadow)
    assert {s["task"] for s in shadow} == {"sentiment", "language"}
    assert [r.key.decode() for r in live.shadow] == [s["task"] for s in shadow]


def test_records_without_embeddings_match_the_schema(
    shadow_pipeline: Pipeline, settings: Settings
) -> None:
    pipeline = dataclasses.replace(shadow_pipeline, include_embedding=False)
    out = process_batch(pipeline, kafka_messages(settings)[-20:])
    signals = values(out.signals)
    assert signals and all("embedding" not in s for s in signals)
    assert_valid(TOPICS.signals, signals)


# ---------------------------------------------------------------------------------------------
# Replay


def test_replay_style_pipeline_records_match_the_schemas(
    shadow_pipeline: Pipeline, settings: Settings
) -> None:
    pipeline = dataclasses.replace(shadow_pipeline, run_id=RUN_ID, include_processing=False)
    out = process_batch(pipeline, kafka_messages(settings))
    signals, letters = values(out.signals), values(out.dead_letters)
    assert_valid(TOPICS.signals, signals)
    assert_valid(TOPICS.dlq, letters)
    assert_valid(TOPICS.enriched, values(out.enriched))
    assert all(s["replay_id"] == RUN_ID and "processing" not in s for s in signals)
    assert all(d["replay_id"] == RUN_ID and "failed_at" not in d for d in letters)


def test_a_file_replay_writes_records_that_match_the_schemas(replayed: dict[str, Any]) -> None:
    assert_valid(TOPICS.signals, replayed["signals"])
    assert_valid(TOPICS.dlq, replayed["dead_letters"])
    assert_valid(TOPICS.windows, replayed["windows"])
    assert replayed["signals"] and replayed["dead_letters"] and replayed["windows"]
    assert all(w["replay_id"] == RUN_ID and w["models"] for w in replayed["windows"])
    assert all(s["source"]["partition"] == 0 and s["source"]["offset"] >= 1
               for s in replayed["signals"])


# ---------------------------------------------------------------------------------------------
# Windows


def test_closed_signal_windows_match_the_schema(live: BatchOutput, settings: Settings) -> None:
    windows = signal_windows(settings, values(live.enriched))
    assert_valid(TOPICS.windows, windows)
    assert {w["window"]["kind"] for w in windows} == {"tumbling", "hopping"}
    assert any(w["flag_rates"] for w in windows)


def test_late_records_match_the_schema(live: BatchOutput, settings: Settings) -> None:
    """Every enriched record once more, after its windows closed: each one is late."""
    def at(record: dict[str, Any], offset: int, **changes: Any) -> dict[str, Any]:
        return {**record, **changes, "source": {**record["source"], "partition": 0,
                                                 "offset": offset}}
    enriched = values(live.enriched)
    aggregator = WindowAggregator({}, window_kinds(settings), grace_ms=0)
    for i, record in enumerate(enriched):
        aggregator.update(record["group"], at(record, i), 0)
    aggregator.update(enriched[0]["group"], at(enriched[0], 10**6, event_time_ms=10**13), 0)
    late = [aggregator.prepare(r["group"], at(r, 10**6 + i), 0).late
            for i, r in enumerate(enriched, 1)]
    assert all(x is not None for x in late)
    assert_valid(TOPICS.late, [x for x in late if x is not None])


def test_closed_model_eval_windows_match_the_schema(live: BatchOutput,
                                                    settings: Settings) -> None:
    windows = eval_windows(settings, values(live.shadow))
    assert_valid(TOPICS.model_eval, windows)
    assert {w["task"] for w in windows} == {"sentiment", "language"}
    drifts = [w["psi"][role] for w in windows for role in ("champion", "challenger")]
    assert any(d is None for d in drifts)            # the language model has no reference
    assert any(d is not None for d in drifts)        # both sentiment models have one


def test_a_score_drift_that_cannot_be_computed_is_null_on_the_wire() -> None:
    """drift() reports NaN when no label of the window is in the reference; orjson writes null."""
    reference = {"predicted": {"a": 5}, "histograms": {"a": [1] * 10}}
    folder = eval_folder({"m-1": reference})
    aggregator = WindowAggregator({}, (TumblingWindow(60_000),), 0, folder=folder)
    side = Signal(model="m-1", label="b", score=0.9, scores={"b": 0.9})
    aggregator.update("t", ShadowRecord("t", 1_000, "e-1", "c-1", side,
                                        dataclasses.replace(side, model="m-2")).to_json(), 0)
    [window] = [orjson.loads(dumps(w)) for w in aggregator.flush()]
    assert window["psi"]["champion"]["scores"] is None
    assert_valid(TOPICS.model_eval, [window])


# ---------------------------------------------------------------------------------------------
# The schemas themselves


def schema_files() -> list[Path]:
    return sorted(SCHEMAS.glob("*.json"))


def subschemas(node: Any, path: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every subschema (as a dict) of a schema, with a JSON-pointer-like path."""
    if not isinstance(node, dict):
        return
    yield path, node
    for key in ONE_SCHEMA:
        if isinstance(node.get(key), dict):
            yield from subschemas(node[key], f"{path}/{key}")
    for key in SCHEMA_LISTS:
        if isinstance(node.get(key), list):
            for i, item in enumerate(node[key]):
                yield from subschemas(item, f"{path}/{key}/{i}")
    for key in SCHEMA_MAPS:
        for name, item in node.get(key, {}).items():
            yield from subschemas(item, f"{path}/{key}/{name}")


def documented_fields(node: Any, path: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    """The subschemas that describe a field of the record (not if/then/allOf helpers)."""
    if not isinstance(node, dict):
        return
    for key in ("properties", "definitions"):
        for name, item in node.get(key, {}).items():
            yield f"{path}/{key}/{name}", item
            yield from documented_fields(item, f"{path}/{key}/{name}")
    for key in ("additionalProperties", "items"):
        if isinstance(node.get(key), dict):
            yield from documented_fields(node[key], f"{path}/{key}")


def test_every_topic_has_a_schema_file_named_after_it() -> None:
    assert {p.stem for p in schema_files()} == set(TOPICS.all())
    assert {p.name for p in schema_files()} == {spec.schema for spec in REGISTRY}


def test_the_registry_and_the_topic_names_list_the_same_roles_in_order() -> None:
    assert [f.name for f in dataclasses.fields(Topics)] == [spec.role for spec in REGISTRY]
    assert Topics.with_prefix("p.").all() == tuple(f"p.{spec.name}" for spec in REGISTRY)


@pytest.mark.parametrize("path", schema_files(), ids=lambda p: p.name)
def test_each_schema_is_valid_draft_07_with_an_id_matching_its_topic(path: Path) -> None:
    document = json.loads(path.read_text(encoding="utf-8"))
    fastjsonschema.compile(DRAFT07)(document)
    assert document["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert document["$id"] == ID_BASE + path.name
    assert document["title"] == path.stem
    unknown = {(where, k) for where, sub in subschemas(document) for k in sub
               if k not in KEYWORDS}
    assert not unknown, f"not draft-07 keywords (typos?): {sorted(unknown)}"
    fastjsonschema.compile(document)


@pytest.mark.parametrize("topic", OUTPUT_TOPICS)
def test_each_output_schema_describes_every_field_and_is_closed(topic: str) -> None:
    document = schema(topic)
    assert document["type"] == "object" and document["additionalProperties"] is False
    assert set(document["required"]) <= set(document["properties"])
    undocumented = [where for where, sub in documented_fields(document)
                    if not sub.get("description")]
    assert not undocumented, f"fields without a description: {undocumented}"


def test_the_dead_letter_error_classes_are_the_reject_reasons() -> None:
    error_class = schema(TOPICS.dlq)["properties"]["error"]["properties"]["class"]
    assert set(error_class["enum"]) == {r.value for r in RejectReason}
    assert len(error_class["enum"]) == len(RejectReason)


def test_the_event_fields_of_outputs_match_the_input_contract() -> None:
    """event_type / content_type / event_time are copied from the input: same constraints."""
    events = schema(TOPICS.events)["properties"]
    for topic in (TOPICS.signals, TOPICS.enriched):
        for name in ("event_type", "content_type", "event_time"):
            mine = schema(topic)["properties"].get(name)
            if mine is not None:
                assert {k: v for k, v in mine.items() if k != "description"} == events[name]


# ---------------------------------------------------------------------------------------------
# The schemas reject wrong records


@pytest.mark.parametrize("breaks", [
    pytest.param(lambda r: r.pop("event_id"), id="missing-event_id"),
    pytest.param(lambda r: r["signals"]["safety"].update(score="0.5"), id="string-score"),
    pytest.param(lambda r: r["signals"]["safety"].update(score=1.5), id="score-over-1"),
    pytest.param(lambda r: r["signals"]["safety"].pop("model"), id="signal-without-model"),
    pytest.param(lambda r: r.update(extra=1), id="unknown-top-level-field"),
    pytest.param(lambda r: r["source"].update(offset=-1), id="negative-offset"),
    pytest.param(lambda r: r["embedding"].update(values=["0.1"]), id="string-embedding"),
    pytest.param(lambda r: r.update(market="gb"), id="lower-case-market"),
    pytest.param(lambda r: r["signals"]["safety"].update(reliable=False, flagged=["hate"]),
                 id="unreliable-but-flagged"),
])
def test_the_signals_schema_rejects_broken_records(live: BatchOutput,
                                                   breaks: Callable[[dict[str, Any]], Any]) -> None:
    [record] = values(live.signals[:1])
    validator(TOPICS.signals)(record)
    breaks(record)
    with pytest.raises(fastjsonschema.JsonSchemaException):
        validator(TOPICS.signals)(record)


@pytest.mark.parametrize(("topic", "record"), [
    (TOPICS.dlq, {"original": {"value_b64": "", "value_utf8": "", "key_b64": None},
                  "source": {"topic": "t", "partition": 0, "offset": 0, "timestamp_ms": None},
                  "error": {"class": "bad_vibes", "message": "?"}}),
    (TOPICS.shadow, {"task": "spam", "event_time_ms": 1,
                     "champion": {"model": "a", "label": "spam", "scores": {}}}),
    (TOPICS.windows, {"window": {"kind": "sliding", "name": "x", "start_ms": 0, "end_ms": 1},
                      "group": "g", "count": 1, "first_event_ms": 0, "last_event_ms": 0,
                      "event_types": {}, "labels": {}, "mean_scores": {}, "flag_counts": {},
                      "flag_rates": {}}),
    (TOPICS.enriched, {"event_id": "e"}),
    (TOPICS.campaigns, {"window": {"kind": "tumbling", "name": "tumbling_60s", "start_ms": 0,
                                   "end_ms": 1}, "group": "topic=News|market=US", "count": 1,
                        "first_event_ms": 0, "last_event_ms": 0, "near_duplicates": 0,
                        "near_duplicate_rate": 0.0, "clusters": 0, "top_clusters": []}),
    (TOPICS.clusters, {"group": "content_type=comment", "event_id": "e", "content_id": "c",
                       "content_type": "comment", "event_time_ms": 1, "cluster": "",
                       "near_duplicate_of": None,
                       "source": {"topic": "t", "partition": 0, "offset": 0}}),
], ids=["dlq-unknown-class", "shadow-no-challenger", "windows-bad-kind", "enriched-partial",
        "campaigns-not-a-content-type-group", "clusters-empty-cluster"])
def test_the_other_schemas_reject_broken_records(topic: str, record: dict[str, Any]) -> None:
    with pytest.raises(fastjsonschema.JsonSchemaException):
        validator(topic)(record)
