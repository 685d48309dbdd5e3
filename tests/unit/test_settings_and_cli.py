"""Settings load from the environment and flags; bad values get a message that says what to fix."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from stream.cli import main
from stream.errors import ConfigError
from stream.settings import Settings

DEMO_EVENTS = Path(__file__).parents[2] / "deploy" / "demo" / "events.jsonl"


def test_environment_then_flags_then_checks() -> None:
    settings = Settings.load(
        {"SIGNALS_BATCH_MAX_SIZE": "128", "KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092",
         "SIGNALS_INCLUDE_EMBEDDING": "false", "SIGNALS_MODELS_DIR": "/models"},
        {"batch_max_wait_s": 0.25, "partitions": None})
    assert settings.batch_max_size == 128
    assert settings.bootstrap_servers == "k1:9092,k2:9092"
    assert settings.include_embedding is False
    assert settings.models_dir == Path("/models")
    assert settings.batch_max_wait_s == 0.25
    assert settings.partitions == 4           # None means "flag not given"


def test_prefixed_bootstrap_wins_over_the_generic_variable() -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": "generic:1", "SIGNALS_BOOTSTRAP_SERVERS": "mine:2"}
    assert Settings.load(env).bootstrap_servers == "mine:2"


def test_topic_prefix_applies_to_every_topic() -> None:
    topics = Settings.load({"SIGNALS_TOPIC_PREFIX": "staging."}).topics
    assert topics.events == "staging.content.events.v1"
    assert all(t.startswith("staging.") for t in topics.all())


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"SIGNALS_BATCH_MAX_SIZE": "many"}, "SIGNALS_BATCH_MAX_SIZE='many' is not a number"),
        ({"SIGNALS_PARTITIONS": "0"}, "SIGNALS_PARTITIONS=0; it must be >= 1"),
        ({"SIGNALS_INCLUDE_EMBEDDING": "maybe"}, "use true or false"),
        ({"SIGNALS_SECURITY_PROTOCOL": "TLS"}, "use one of"),
        ({"SIGNALS_SECURITY_PROTOCOL": "SASL_SSL"}, "SIGNALS_SASL_USERNAME"),
        ({"SIGNALS_HOPPING_WINDOW_S": "300", "SIGNALS_HOPPING_STEP_S": "70"}, "not a multiple"),
        ({"SIGNALS_CONNECT_TIMEOUT_S": "0"}, "SIGNALS_CONNECT_TIMEOUT_S=0.0; it must be > 0"),
        ({"SIGNALS_SIMILARITY_INDEX": "faiss"}, "SIGNALS_SIMILARITY_INDEX='faiss'; use one of"),
        ({"SIGNALS_SIMILARITY_INDEX": "pgvector"}, "needs SIGNALS_SIMILARITY_DSN"),
        ({"SIGNALS_NEAR_DUPLICATE_THRESHOLD": "1.5"}, "a cosine in [-1, 1]"),
        ({"SIGNALS_SIMILARITY_TABLE": "x; drop"}, "use letters, digits and _"),
    ],
)
def test_bad_settings_say_what_to_fix(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        Settings.load(env)
    assert fragment in str(info.value)


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(AttributeError):
        settings.partitions = 8  # type: ignore[misc]


def test_cli_rejects_a_bad_flag_with_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["worker", "--batch-max-size", "zero"])
    assert exit_info.value.code == 2
    assert "'zero' is not a whole number" in capsys.readouterr().err


def test_cli_reports_config_errors_without_a_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIGNALS_LOG_FORMAT", "xml")
    assert main(["tail", "content.signals.v1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: SIGNALS_LOG_FORMAT='xml'")
    assert "Traceback" not in err


def test_produce_reports_an_unreadable_file(capsys: pytest.CaptureFixture[str],
                                            tmp_path: Path) -> None:
    assert main(["produce", str(tmp_path / "missing.jsonl"),
                 "--bootstrap-servers", "127.0.0.1:1"]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_a_broker_that_is_not_there_is_reported_within_the_connect_timeout(
        capsys: pytest.CaptureFixture[str]) -> None:
    """kafka-python would wait 30 s for a first broker; the tools wait connect_timeout_s."""
    started = time.monotonic()
    assert main(["produce", str(DEMO_EVENTS), "--bootstrap-servers", "127.0.0.1:1",
                 "--connect-timeout-s", "0.5"]) == 2
    assert "no Kafka broker answers at 127.0.0.1:1" in capsys.readouterr().err
    assert time.monotonic() - started < 25  # far below kafka-python's own 30 s default


def test_a_child_process_environment_loads_the_same_settings(tmp_path: Path) -> None:
    from stream.settings import as_environment, child_environment

    settings = Settings.load({}).replace(worker_data_dir=tmp_path, include_embedding=False,
                                         near_duplicate_threshold=None, profile="fast")
    assert Settings.load(as_environment(settings)) == settings
    child = child_environment(settings, {"PATH": "/bin", "SIGNALS_APP_ID": "other",
                                         "KAFKA_BOOTSTRAP_SERVERS": "elsewhere:9092"})
    assert child["PATH"] == "/bin" and "KAFKA_BOOTSTRAP_SERVERS" not in child
    assert Settings.load(child) == settings
