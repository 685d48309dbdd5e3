"""The one settings object: frozen, loaded once, passed down.

`Settings.load(environ, overrides)` reads ``SIGNALS_*`` environment variables (the field name in
upper case, e.g. ``SIGNALS_BATCH_MAX_SIZE=128``), applies CLI overrides on top, checks every value
and returns an immutable object. Nothing in the package reads the environment at import time; the
CLI calls `load` once and hands the result to whatever it starts.

``KAFKA_BOOTSTRAP_SERVERS`` is honoured as a fallback for ``SIGNALS_BOOTSTRAP_SERVERS`` because
that is the name Kafka tooling (and this project's test fixture) already uses.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from stream.core.topics import Topics
from stream.errors import ConfigError
from stream.models.manifest import parse_task_versions
from stream.paths import DATA_ROOT, STATE_ROOT

ENV_PREFIX = "SIGNALS_"

_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_LOG_FORMATS = ("json", "console")
_TOPIC_CHARS = re.compile(r"[a-zA-Z0-9._-]*")   # Kafka's legal topic characters
_MAX_TOPIC_LENGTH = 249
_LONGEST_TABLE = "model-eval-windows"            # stream.worker.app.EVAL_TABLE_NAME
_MAX_WAIT_S = 86_400.0                            # a day: larger waits are typos
_SPARK_MASTER = re.compile(r"local(\[(\d+|\*)(,\d+)?\])?|spark://\S+|yarn|k8s://\S+|mesos://\S+")
_INDEX_KINDS = ("usearch", "exact", "pgvector")   # the registry: stream.similarity.kinds


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a worker or tool needs to know; see README "Configuration" for each field."""

    app_id: str = "content-signals"
    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "PLAIN"
    sasl_username: str = ""
    sasl_password: str = field(default="", repr=False)
    ssl_cafile: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    connect_timeout_s: float = 10.0  # how long the kafka-python tools wait for a first broker
    topic_prefix: str = ""
    partitions: int = 4
    replication_factor: int = 1
    batch_max_size: int = 64
    batch_max_wait_s: float = 0.5
    window_batch_max_size: int = 256  # the window agents' micro-batch (within batch_max_wait_s)
    encoder_bucket_size: int = 8  # measured in README "Benchmarks" (v2 heads were trained at 32)
    model_threads: int = 2
    model_spinning: bool = False  # ORT threads busy-wait between calls (see README "Benchmarks")
    # the manifest's multilingual heads serve items in languages the champions are not reliable in
    language_tier: bool = True
    models_dir: Path = DATA_ROOT / "models_onnx"
    schemas_dir: Path = DATA_ROOT / "schemas"
    max_event_bytes: int = 262_144
    max_future_skew_s: float = 300.0  # event_time at most this far after the message's time
    max_event_age_s: float = 0.0  # ... and at most this far before it (0 = no bound, the default)
    include_embedding: bool = True
    tumbling_window_s: int = 60
    hopping_window_s: int = 300
    hopping_step_s: int = 60
    window_grace_s: int = 10
    watermark_idle_s: float = 60.0  # a silent input partition stops holding windows (0 = never)
    send_late_records: bool = False  # records too late for a window also go to signals.late.v1
    challengers: str = ""  # "task=version,...": shadow models run beside the champions
    model_eval_window_s: int = 300
    worker_data_dir: Path = STATE_ROOT / ".kafka" / "worker"
    web_port: int = 6066
    # /metrics, /healthz, /readyz of the worker; 0 = no HTTP server (9100 is node_exporter's)
    metrics_port: int = 9180
    metrics_host: str = "0.0.0.0"
    # consumer group liveness: a worker that sends no heartbeat for session_timeout_s is presumed
    # dead and its partitions move (the takeover time after a crash); Kafka bounds it by the
    # broker's group.min/max.session.timeout.ms (6 s .. 30 min by default)
    session_timeout_s: float = 10.0
    heartbeat_interval_s: float = 3.0
    # static group membership (group.instance.id, KIP-345): a worker restarted under the same id
    # within session_timeout_s gets its partitions back without a rebalance; one id per worker
    group_instance_id: str = ""
    spark_master: str = ""  # replay --engine spark: "" = spark-submit's --master, else local[*]
    log_level: str = "INFO"
    log_format: str = "json"
    similarity_index: str = "usearch"  # usearch | exact | pgvector (stream.similarity.kinds)
    similarity_dsn: str = field(default="", repr=False)  # pgvector: postgresql://... (libpq)
    similarity_table: str = "content_embeddings"
    # None: the encoder's own, calibrated on labelled pairs and kept in its manifest entry
    # (`signals similar --calibrate --record`; stream.similarity.calibration.shipped_threshold)
    near_duplicate_threshold: float | None = None
    # a named model choice of the manifest ("fast": the static encoder + its heads; "cascade":
    # those, escalating unsure items to the active encoder's heads); "" = active
    profile: str = ""
    related_k: int = 10

    @property
    def topics(self) -> Topics:
        return Topics.with_prefix(self.topic_prefix)

    @property
    def manifest_path(self) -> Path:
        return self.models_dir / "manifest.json"

    @property
    def challenger_versions(self) -> dict[str, str]:
        """``SIGNALS_CHALLENGERS=topic=topic-v2,spam=spam-v3`` as {task: version}."""
        pairs = [p.strip() for p in self.challengers.split(",") if p.strip()]
        return parse_task_versions(pairs, "SIGNALS_CHALLENGERS")

    @classmethod
    def load(
        cls, environ: Mapping[str, str], overrides: Mapping[str, Any] | None = None
    ) -> Settings:
        """Settings from ``SIGNALS_*`` variables, then ``overrides`` (CLI flags; None = unset)."""
        values: dict[str, Any] = {}
        if "KAFKA_BOOTSTRAP_SERVERS" in environ:
            values["bootstrap_servers"] = environ["KAFKA_BOOTSTRAP_SERVERS"]
        for f in fields(cls):
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is not None:
                values[f.name] = _coerce(f.name, f.type, raw, ENV_PREFIX + f.name.upper())
        for name, value in (overrides or {}).items():
            if value is not None:
                flag = "--" + name.replace("_", "-")
                values[name] = _coerce(name, _field_type(cls, name), value, flag)
        settings = cls(**values)
        settings.check()
        return settings

    def replace(self, **changes: Any) -> Settings:
        """A checked copy with some fields changed (tests and tools use it)."""
        new = dataclasses.replace(self, **changes)
        new.check()
        return new

    def check(self) -> None:
        """Raise ConfigError naming the first setting that cannot work, by its variable."""
        _check_kafka(self)
        _check_numbers(self)
        _check_serving(self)
        _check_similarity(self)
        _require(self.related_k >= 0, f"SIGNALS_RELATED_K={self.related_k}; it must be >= 0")
        _require(self.log_level.upper() in ("DEBUG", "INFO", "WARNING", "ERROR"),
                 f"SIGNALS_LOG_LEVEL={self.log_level!r}; use DEBUG, INFO, WARNING or ERROR")


def as_environment(settings: Settings) -> dict[str, str]:
    """The ``SIGNALS_*`` variables under which `Settings.load` in a child process (a worker the
    demo, the live bench or a test starts) gives `settings` back; None is the empty value."""
    env = {}
    for f in fields(settings):
        value = getattr(settings, f.name)
        env[_var(f.name)] = (str(value).lower() if isinstance(value, bool) else
                             "" if value is None else str(value))
    return env


def child_environment(settings: Settings, environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` without its own ``SIGNALS_*`` (and ``KAFKA_BOOTSTRAP_SERVERS``) variables, plus
    `as_environment(settings)`: what a child process that runs with `settings` is given."""
    inherited = {k: v for k, v in environ.items()
                 if not k.startswith(ENV_PREFIX) and k != "KAFKA_BOOTSTRAP_SERVERS"}
    return {**inherited, **as_environment(settings)}


def _check_kafka(settings: Settings) -> None:
    """The brokers, names and security settings."""
    _check_servers(settings.bootstrap_servers)
    _check_kafka_names(settings)
    _require(settings.security_protocol in _SECURITY_PROTOCOLS,
             f"SIGNALS_SECURITY_PROTOCOL={settings.security_protocol!r}; use one of "
             f"{_SECURITY_PROTOCOLS}")
    _require(settings.sasl_mechanism in _SASL_MECHANISMS,
             f"SIGNALS_SASL_MECHANISM={settings.sasl_mechanism!r}; use one of {_SASL_MECHANISMS}")
    if settings.security_protocol.startswith("SASL"):
        _require(bool(settings.sasl_username and settings.sasl_password),
                 "SASL needs SIGNALS_SASL_USERNAME and SIGNALS_SASL_PASSWORD")


def _check_numbers(settings: Settings) -> None:
    """Sizes, timeouts, the metrics port and window lengths."""
    for name in ("partitions", "replication_factor", "batch_max_size",
                 "window_batch_max_size", "encoder_bucket_size",
                 "model_threads", "max_event_bytes", "tumbling_window_s", "hopping_window_s",
                 "hopping_step_s", "model_eval_window_s"):
        _require(getattr(settings, name) >= 1,
                 f"{_var(name)}={getattr(settings, name)}; it must be >= 1")
    for name in ("batch_max_wait_s", "connect_timeout_s"):   # finite: inf never flushes
        value = getattr(settings, name)
        _require(math.isfinite(value) and 0 < value <= _MAX_WAIT_S,
                 f"{_var(name)}={value}; it must be > 0 and at most {_MAX_WAIT_S:.0f}")
    _require(settings.window_grace_s >= 0,
             f"SIGNALS_WINDOW_GRACE_S={settings.window_grace_s}; it must be >= 0")
    _require(0 <= settings.metrics_port <= 65535,
             f"SIGNALS_METRICS_PORT={settings.metrics_port}; use a TCP port 1-65535, or 0 for no "
             "metrics/health server")
    _require(bool(settings.metrics_host.strip()),
             "SIGNALS_METRICS_HOST is empty; use an address to listen on, e.g. 0.0.0.0")
    for name in ("session_timeout_s", "heartbeat_interval_s"):
        value = getattr(settings, name)
        _require(math.isfinite(value) and value > 0, f"{_var(name)}={value}; it must be > 0")
    _require(settings.heartbeat_interval_s < settings.session_timeout_s,
             f"SIGNALS_HEARTBEAT_INTERVAL_S={settings.heartbeat_interval_s} must be below "
             f"SIGNALS_SESSION_TIMEOUT_S={settings.session_timeout_s} (Kafka advises a third)")
    for name in ("max_future_skew_s", "max_event_age_s", "watermark_idle_s"):
        value = getattr(settings, name)
        _require(math.isfinite(value) and value >= 0,
                 f"{_var(name)}={value}; it must be >= 0 (0 switches the bound off)")
    _require(settings.hopping_window_s % settings.hopping_step_s == 0,
             f"SIGNALS_HOPPING_WINDOW_S={settings.hopping_window_s} is not a multiple of "
             f"SIGNALS_HOPPING_STEP_S={settings.hopping_step_s}")


def _check_serving(settings: Settings) -> None:
    """The web port, the Spark master, challengers and the log format."""
    _require(1 <= settings.web_port <= 65535,
             f"SIGNALS_WEB_PORT={settings.web_port}; use a port from 1 to 65535")
    _require(not settings.spark_master or bool(_SPARK_MASTER.fullmatch(settings.spark_master)),
             f"SIGNALS_SPARK_MASTER={settings.spark_master!r}; use local, local[N], local[*], "
             "spark://host:port, yarn or k8s://https://host:port (empty: spark-submit's)")
    settings.challenger_versions  # noqa: B018 -- parses, raising ConfigError when malformed
    _require(settings.log_format in _LOG_FORMATS,
             f"SIGNALS_LOG_FORMAT={settings.log_format!r}; use one of {_LOG_FORMATS}")


def _check_similarity(settings: Settings) -> None:
    """The similarity index and its thresholds."""
    _require(settings.similarity_index in _INDEX_KINDS,
             f"SIGNALS_SIMILARITY_INDEX={settings.similarity_index!r}; use one of {_INDEX_KINDS}")
    if settings.similarity_index == "pgvector":
        _require(bool(settings.similarity_dsn.strip()),
                 "SIGNALS_SIMILARITY_INDEX=pgvector needs SIGNALS_SIMILARITY_DSN="
                 "postgresql://... (`signals db start` prints one)")
    _require(settings.similarity_table.isidentifier(),
             f"SIGNALS_SIMILARITY_TABLE={settings.similarity_table!r}; use letters, digits and _")
    _require(settings.near_duplicate_threshold is None
             or -1.0 <= settings.near_duplicate_threshold <= 1.0,
             f"SIGNALS_NEAR_DUPLICATE_THRESHOLD={settings.near_duplicate_threshold}; use a cosine "
             "in [-1, 1]")


def _var(name: str) -> str:
    return ENV_PREFIX + name.upper()


def _check_servers(servers: str) -> None:
    """Every entry of SIGNALS_BOOTSTRAP_SERVERS is host:port with a port from 1 to 65535."""
    _require(bool(servers.strip()), "SIGNALS_BOOTSTRAP_SERVERS is empty; "
             "set SIGNALS_BOOTSTRAP_SERVERS=host:port[,host:port]")
    for entry in servers.split(","):
        host, _, port = entry.strip().rpartition(":")
        _require(bool(host) and port.isdigit() and 1 <= int(port) <= 65535,
                 f"SIGNALS_BOOTSTRAP_SERVERS={servers!r}: {entry.strip()!r} is not host:port "
                 "with a port from 1 to 65535")


def _check_kafka_names(settings: Settings) -> None:
    """The topic prefix and the app id (the prefix of Faust's changelog topics) must make legal
    Kafka topic names: only [a-zA-Z0-9._-], at most 249 characters."""
    _require(bool(settings.app_id), "SIGNALS_APP_ID is empty; it names the consumer group and "
             "the changelog topics (default content-signals)")
    longest_changelog = f"{settings.app_id}-{_LONGEST_TABLE}-changelog"
    longest_topic = settings.topic_prefix + max(Topics().all(), key=len)
    for variable, value, name in (("SIGNALS_APP_ID", settings.app_id, longest_changelog),
                                  ("SIGNALS_TOPIC_PREFIX", settings.topic_prefix, longest_topic)):
        _require(_TOPIC_CHARS.fullmatch(value) is not None,
                 f"{variable}={value!r}: topic names may only use letters, digits, '.', '_' "
                 "and '-'")
        _require(len(name) <= _MAX_TOPIC_LENGTH,
                 f"{variable}={value!r} is too long: topic {name[:40]}... would have "
                 f"{len(name)} characters, Kafka allows {_MAX_TOPIC_LENGTH}")
    instance = settings.group_instance_id.strip()
    _require(not instance or (_TOPIC_CHARS.fullmatch(instance) is not None
                              and len(instance) <= _MAX_TOPIC_LENGTH),
             f"SIGNALS_GROUP_INSTANCE_ID={settings.group_instance_id!r}: Kafka allows letters, "
             f"digits, '.', '_' and '-', at most {_MAX_TOPIC_LENGTH} characters (or leave it "
             "empty for no static membership)")


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _field_type(cls: type[Settings], name: str) -> Any:
    for f in fields(cls):
        if f.name == name:
            return f.type
    raise ConfigError(f"unknown setting {name!r}")


def _coerce(name: str, type_name: Any, raw: Any, source: str) -> Any:
    """Convert a string (or CLI value) to the field's type, or say what is wrong with it."""
    kind = type_name if isinstance(type_name, str) else getattr(type_name, "__name__", "str")
    if kind.endswith(" | None") and isinstance(raw, str):
        if not raw.strip():
            return None                      # an empty value: the default's meaning
        kind = kind.removesuffix(" | None")
    if not isinstance(raw, str):
        return Path(raw) if kind == "Path" else raw
    try:
        if kind == "int":
            return int(raw)
        if kind == "float" and math.isfinite(float(raw)):
            return float(raw)
        if kind == "float":
            raise ConfigError(f"{source}={raw!r} is not a finite number")
    except ValueError:
        raise ConfigError(f"{source}={raw!r} is not a number ({name} expects a {kind})") from None
    if kind == "bool":
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{source}={raw!r} is not a boolean; use true or false")
    if kind == "Path":
        return Path(raw)
    return raw
