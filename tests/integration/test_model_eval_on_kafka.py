"""Champion/challenger on a real Kafka broker: a worker with the sentiment challenger shadows the
champion, one model-eval window closes with the right count, models, agreement and PSI, the
signals carry only the champion, and `signals eval --from-topic` summarises the window."""

from __future__ import annotations

import json
import math
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream.cli import main as cli_main
from stream.connectors.kafka import ensure_topics, produce
from stream.core.builder import build_pipeline
from stream.core.records import ContentEvent
from stream.models.manifest import load_manifest
from stream.settings import Settings
from tests.integration.helpers import collect, running_worker, values

pytestmark = pytest.mark.integration

CHALLENGER = "sentiment-minilm-mlp-v1"  # a v1 head: the worker also loads v1's encoder for it
CHALLENGER_ENCODER = "minilm-l6-v2-int8-v1"
T0 = "2026-01-05T10:{:02d}:{:02d}Z"  # fixed event times: windows use event time

COMMENTS = [
    "Absolutely loved this episode, the host was brilliant and funny.",
    "Best podcast I have listened to all year, thank you so much!",
    "This was a waste of an hour. Boring and badly edited.",
    "The audio quality is terrible, I could barely hear the guest.",
    "Episode 12 was released on Tuesday.",
    "The interview covers the history of the local railway.",
    "I can't stand how often they interrupt each other, so annoying.",
    "What a wonderful story, it made my whole week better.",
    "Meh. It was okay I guess, nothing special.",
    "They talk about the new budget proposal for about forty minutes.",
    "Horrible take, completely wrong and disrespectful to the listeners.",
    "Great guests, great questions, great vibes. Subscribed!",
    "The second half is a Q&A with listeners.",
    "I'm so disappointed they cancelled the show, it was my favourite.",
    "Such an inspiring conversation, I learned a lot.",
    "Too many ads, I gave up after ten minutes.",
    "The transcript is available on their website.",
    "Thanks for the recommendation, I really enjoyed it!",
    "This is the worst season so far and the jokes fall flat.",
    "Recorded in London with three guests from the industry.",
]


def comment(i: int, text: str, minute: int, second: int) -> dict[str, Any]:
    return {"event_id": f"me-{i}", "event_type": "content.published", "content_id": f"cm-{i}",
            "content_type": "comment", "event_time": T0.format(minute, second), "market": "GB",
            "text": text}


@pytest.fixture
def eval_settings(kafka_bootstrap: str, tmp_path: Path) -> Settings:
    run = uuid.uuid4().hex[:8]
    return Settings.load({}, {"bootstrap_servers": kafka_bootstrap}).replace(
        app_id=f"signals-me-{run}", topic_prefix=f"me-{run}.", partitions=1,
        worker_data_dir=tmp_path / "worker", batch_max_size=32, batch_max_wait_s=0.2,
        model_threads=1, window_grace_s=30, model_eval_window_s=60,
        challengers=f"sentiment={CHALLENGER}", include_embedding=False, log_format="json")


def challenger_labels(settings: Settings, events: list[dict[str, Any]]) -> list[str]:
    """The challenger run as the sentiment model of a local pipeline (on the encoder it was
    trained on), all texts in one batch."""
    pipeline = build_pipeline(settings.replace(challengers=""),
                              versions={"embedding": CHALLENGER_ENCODER, "sentiment": CHALLENGER})
    parsed = [pipeline.validate(orjson.dumps(e)) for e in events]
    assert all(isinstance(p, ContentEvent) for p in parsed)
    enriched = pipeline.enricher.enrich(parsed)  # type: ignore[arg-type]
    assert all(e.signals["sentiment"].model == CHALLENGER for e in enriched)
    return [e.signals["sentiment"].label for e in enriched]


def test_challenger_is_shadowed_and_evaluated_in_one_window(
    eval_settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    champion = load_manifest(eval_settings.manifest_path).active["sentiment"]
    assert champion != CHALLENGER
    first = [comment(i, text, 0, 2 * i) for i, text in enumerate(COMMENTS)]  # [10:00, 10:01)
    closer = comment(len(COMMENTS), "Another great episode, well done.", 10, 0)
    topics = eval_settings.topics
    read = [topics.signals, topics.shadow, topics.model_eval]
    ensure_topics(eval_settings)
    produce(eval_settings, topics.events, [(e["content_id"].encode(), orjson.dumps(e))
                                           for e in first])
    log = tmp_path / "worker.log"
    with running_worker(eval_settings, log) as worker:
        collect(eval_settings, read, timeout_s=90, worker=worker, worker_log=log,
                until=lambda s: len(s[topics.signals]) >= len(first))
        produce(eval_settings, topics.events, [(closer["content_id"].encode(),
                                                orjson.dumps(closer))])
        seen = collect(eval_settings, read, timeout_s=60, worker=worker, worker_log=log,
                       until=lambda s: (len(s[topics.signals]) > len(first)
                                        and len(s[topics.model_eval]) >= 1))

    # The signals carry only the champion; the challenger exists only in shadow records.
    signals = {s["event_id"]: s for s in values(seen[topics.signals])}
    assert len(signals) == len(first) + 1
    for signal in signals.values():
        assert signal["signals"]["sentiment"]["model"] == champion
        assert signal["models"]["sentiment"] == champion
        assert CHALLENGER not in orjson.dumps(signal).decode()
    shadows = values(seen[topics.shadow])
    assert {(s["champion"]["model"], s["challenger"]["model"]) for s in shadows} == {
        (champion, CHALLENGER)}

    windows = values(seen[topics.model_eval])
    assert len(windows) == 1, windows
    window = windows[0]
    n = len(first)
    assert window["task"] == "sentiment"
    assert window["count"] == n
    assert window["window"]["end_ms"] - window["window"]["start_ms"] == 60_000
    assert window["models"] == {"champion": champion, "challenger": CHALLENGER}

    champion_labels = [signals[e["event_id"]]["signals"]["sentiment"]["label"] for e in first]
    local = challenger_labels(eval_settings, first)
    local_rate = sum(a == b for a, b in zip(champion_labels, local, strict=True)) / n
    rate = window["agreement_rate"]
    assert 0.0 <= rate <= 1.0
    # embeddings depend very slightly on batch composition: allow one item to flip
    assert abs(rate - local_rate) <= 1 / n + 1e-9, (rate, local_rate)
    in_window = [s for s in shadows if s["event_time_ms"] < window["window"]["end_ms"]]
    assert rate == sum(s["champion"]["label"] == s["challenger"]["label"]
                       for s in in_window) / n

    for role in ("champion", "challenger"):
        assert math.isclose(sum(window["label_distribution"][role].values()), 1.0)
        drift = window["psi"][role]
        assert drift is not None and drift["labels"] >= 0 and drift["scores"] >= 0

    assert cli_main(["eval", "--from-topic", topics.model_eval, "--bootstrap-servers",
                     eval_settings.bootstrap_servers, "--idle-timeout", "3"]) == 0
    printed = capsys.readouterr().out
    assert f"sentiment: {champion} vs {CHALLENGER}: {n} items in 1 windows" in printed
    print(json.dumps({"agreement_rate": rate, "local_agreement_rate": local_rate,
                      "psi": window["psi"], "label_distribution": window["label_distribution"]}))
