"""Every setting's bad values: a ConfigError whose one line names the variable, never a traceback.

The table covers each `Settings` field that has a value that cannot work. The path fields
(``SIGNALS_MODELS_DIR``, ``SIGNALS_SCHEMAS_DIR``, ``SIGNALS_WORKER_DATA_DIR``) and the manifest's
``SIGNALS_PROFILE`` are checked where they are used (a missing manifest is a ModelFileError
naming it), because commands such as ``signals broker start`` never read them.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from stream.connectors.security import kafka_python_security
from stream.errors import ConfigError, ModelFileError
from stream.models.manifest import load_manifest
from stream.settings import Settings

SASL = {"SIGNALS_SECURITY_PROTOCOL": "SASL_SSL", "SIGNALS_SASL_USERNAME": "u",
        "SIGNALS_SASL_PASSWORD": "p"}
MISSING = "/nonexistent/content-signals/file.pem"

BAD: list[tuple[str, str, dict[str, str]]] = [
    # (variable, bad value, other variables it needs)
    ("SIGNALS_APP_ID", "", {}),
    ("SIGNALS_APP_ID", "my app", {}),
    ("SIGNALS_APP_ID", "a" * 240, {}),
    ("SIGNALS_GROUP_INSTANCE_ID", "worker 0", {}),
    ("SIGNALS_BOOTSTRAP_SERVERS", "", {}),
    ("SIGNALS_BOOTSTRAP_SERVERS", "127.0.0.1:notaport", {}),
    ("SIGNALS_BOOTSTRAP_SERVERS", "127.0.0.1", {}),
    ("SIGNALS_BOOTSTRAP_SERVERS", "k1:9092,,k2:9092", {}),
    ("SIGNALS_BOOTSTRAP_SERVERS", "k1:0", {}),
    ("SIGNALS_BOOTSTRAP_SERVERS", "k1:70000", {}),
    ("SIGNALS_SECURITY_PROTOCOL", "TLS", {}),
    ("SIGNALS_SASL_MECHANISM", "GSSAPI", {}),
    ("SIGNALS_SASL_USERNAME", "", {**SASL}),
    ("SIGNALS_SASL_PASSWORD", "", {**SASL}),
    ("SIGNALS_SSL_CAFILE", MISSING, {**SASL}),
    ("SIGNALS_SSL_CERTFILE", MISSING, {"SIGNALS_SECURITY_PROTOCOL": "SSL"}),
    ("SIGNALS_SSL_KEYFILE", MISSING, {"SIGNALS_SECURITY_PROTOCOL": "SSL"}),
    ("SIGNALS_CONNECT_TIMEOUT_S", "inf", {}),
    ("SIGNALS_CONNECT_TIMEOUT_S", "nan", {}),
    ("SIGNALS_CONNECT_TIMEOUT_S", "0", {}),
    ("SIGNALS_CONNECT_TIMEOUT_S", "-3", {}),
    ("SIGNALS_CONNECT_TIMEOUT_S", "1e12", {}),
    ("SIGNALS_CONNECT_TIMEOUT_S", "soon", {}),
    ("SIGNALS_TOPIC_PREFIX", "bad prefix/", {}),
    ("SIGNALS_TOPIC_PREFIX", "ü.", {}),
    ("SIGNALS_TOPIC_PREFIX", "p" * 240, {}),
    ("SIGNALS_PARTITIONS", "0", {}),
    ("SIGNALS_PARTITIONS", "four", {}),
    ("SIGNALS_REPLICATION_FACTOR", "0", {}),
    ("SIGNALS_BATCH_MAX_SIZE", "0", {}),
    ("SIGNALS_BATCH_MAX_SIZE", "many", {}),
    ("SIGNALS_WINDOW_BATCH_MAX_SIZE", "0", {}),
    ("SIGNALS_BATCH_MAX_WAIT_S", "inf", {}),
    ("SIGNALS_BATCH_MAX_WAIT_S", "-inf", {}),
    ("SIGNALS_BATCH_MAX_WAIT_S", "0", {}),
    ("SIGNALS_ENCODER_BUCKET_SIZE", "0", {}),
    ("SIGNALS_MODEL_THREADS", "0", {}),
    ("SIGNALS_MODEL_SPINNING", "sometimes", {}),
    ("SIGNALS_LANGUAGE_TIER", "perhaps", {}),
    ("SIGNALS_MAX_EVENT_BYTES", "0", {}),
    ("SIGNALS_INCLUDE_EMBEDDING", "maybe", {}),
    ("SIGNALS_TUMBLING_WINDOW_S", "0", {}),
    ("SIGNALS_TUMBLING_WINDOW_S", "1.5", {}),
    ("SIGNALS_HOPPING_WINDOW_S", "0", {}),
    ("SIGNALS_HOPPING_WINDOW_S", "310", {}),
    ("SIGNALS_HOPPING_STEP_S", "0", {}),
    ("SIGNALS_HOPPING_STEP_S", "70", {}),
    ("SIGNALS_WINDOW_GRACE_S", "-1", {}),
    ("SIGNALS_CHALLENGERS", "sentiment", {}),
    ("SIGNALS_MODEL_EVAL_WINDOW_S", "0", {}),
    ("SIGNALS_WEB_PORT", "0", {}),
    ("SIGNALS_WEB_PORT", "70000", {}),
    ("SIGNALS_MAX_FUTURE_SKEW_S", "-1", {}),
    ("SIGNALS_MAX_FUTURE_SKEW_S", "inf", {}),
    ("SIGNALS_MAX_EVENT_AGE_S", "-5", {}),
    ("SIGNALS_WATERMARK_IDLE_S", "-1", {}),
    ("SIGNALS_WATERMARK_IDLE_S", "nan", {}),
    ("SIGNALS_SEND_LATE_RECORDS", "perhaps", {}),
    ("SIGNALS_METRICS_PORT", "-1", {}),
    ("SIGNALS_METRICS_PORT", "70000", {}),
    ("SIGNALS_METRICS_HOST", " ", {}),
    ("SIGNALS_SESSION_TIMEOUT_S", "0", {}),
    ("SIGNALS_SESSION_TIMEOUT_S", "inf", {}),
    ("SIGNALS_HEARTBEAT_INTERVAL_S", "0", {}),
    ("SIGNALS_HEARTBEAT_INTERVAL_S", "20", {}),
    ("SIGNALS_SPARK_MASTER", "my-cluster", {}),
    ("SIGNALS_SPARK_MASTER", "local[two]", {}),
    ("SIGNALS_LOG_LEVEL", "LOUD", {}),
    ("SIGNALS_LOG_FORMAT", "xml", {}),
    ("SIGNALS_SIMILARITY_INDEX", "faiss", {}),
    ("SIGNALS_SIMILARITY_DSN", " ", {"SIGNALS_SIMILARITY_INDEX": "pgvector"}),
    ("SIGNALS_SIMILARITY_TABLE", "x; drop table", {}),
    ("SIGNALS_NEAR_DUPLICATE_THRESHOLD", "1.5", {}),
    ("SIGNALS_NEAR_DUPLICATE_THRESHOLD", "nan", {}),
    ("SIGNALS_RELATED_K", "-1", {}),
]
CHECKED_WHERE_USED = {"models_dir", "schemas_dir", "worker_data_dir", "profile"}


def configure(env: dict[str, str]) -> None:
    """What every Kafka command does first: load the settings, then its client options."""
    kafka_python_security(Settings.load(env))


@pytest.mark.parametrize(("variable", "value", "others"), BAD,
                         ids=[f"{v}={x[:20]!r}" for v, x, _ in BAD])
def test_a_bad_value_is_one_line_naming_its_variable(variable: str, value: str,
                                                     others: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as info:
        configure({**others, variable: value})
    message = str(info.value)
    assert variable in message
    assert "\n" not in message


def test_the_table_covers_every_field() -> None:
    covered = {variable.removeprefix("SIGNALS_").lower() for variable, _, _ in BAD}
    assert covered | CHECKED_WHERE_USED == {f.name for f in fields(Settings)}


def test_a_missing_models_dir_is_named_where_it_is_used(tmp_path: Path) -> None:
    settings = Settings.load({"SIGNALS_MODELS_DIR": str(tmp_path / "none")})
    with pytest.raises(ModelFileError, match=str(tmp_path / "none")):
        load_manifest(settings.manifest_path)


def test_an_unknown_profile_is_one_line_listing_the_manifests_profiles() -> None:
    settings = Settings.load({"SIGNALS_PROFILE": "turbo"})
    with pytest.raises(ConfigError) as info:
        load_manifest(settings.manifest_path).profile(settings.profile)
    message = str(info.value)
    assert "SIGNALS_PROFILE='turbo'" in message and "'default'" in message
    assert "'fast'" in message and "\n" not in message


def test_a_flag_with_a_non_finite_number_is_a_usage_error(
        capsys: pytest.CaptureFixture[str]) -> None:
    from stream.cli import main

    with pytest.raises(SystemExit) as info:
        main(["tail", "t", "--connect-timeout-s", "inf"])
    assert info.value.code == 2
    assert "'inf' is not a finite number" in capsys.readouterr().err


@pytest.mark.parametrize(("command", "variable", "value"), [
    (["produce", "-"], "SIGNALS_CONNECT_TIMEOUT_S", "inf"),
    (["produce", "-"], "SIGNALS_BOOTSTRAP_SERVERS", "127.0.0.1:notaport"),
    (["tail", "content.signals.v1"], "SIGNALS_TOPIC_PREFIX", "bad prefix/"),
    (["worker"], "SIGNALS_APP_ID", ""),
    (["worker"], "SIGNALS_BATCH_MAX_WAIT_S", "inf"),
])
def test_the_command_prints_one_line_and_exits_2(command: list[str], variable: str,
                                                 value: str) -> None:
    env = {"PATH": "/usr/bin:/bin", variable: value}
    result = subprocess.run([sys.executable, "-m", "stream.cli", *command], env=env,
                            capture_output=True, text=True, timeout=120, input="")
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and variable in lines[0]
