"""kafka-python helpers for the tools (not the worker): topic creation, producing, tailing.

The worker talks to Kafka through Faust/aiokafka; the CLI tools (`produce`, `tail`, the topic
set-up before a worker starts, replay) use kafka-python with the same security settings. Each
client is created after `probe.check_connection`, so a refused login or TLS handshake is one line
(not a minute of retried socket errors).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

import structlog
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import (
    InvalidReplicationFactorError,
    InvalidTopicError,
    KafkaError,
    TopicAlreadyExistsError,
)

from stream.connectors.probe import check_connection
from stream.connectors.security import kafka_python_security
from stream.core.topics import compacted_roles
from stream.errors import BrokerError
from stream.settings import Settings

log = structlog.get_logger("stream.connectors.kafka")

# Kafka's default message limit is 1 MB; the base64 in a dead letter of a 1 MB message is 1.34 MB.
DLQ_MAX_MESSAGE_BYTES = 4 * 1024 * 1024


def client_config(settings: Settings) -> dict[str, Any]:
    """Connection and security options shared by every kafka-python client we create."""
    return {
        "bootstrap_servers": [s.strip() for s in settings.bootstrap_servers.split(",")],
        "bootstrap_timeout_ms": int(settings.connect_timeout_s * 1000),
        **kafka_python_security(settings),
    }


def admin_client(settings: Settings) -> KafkaAdminClient:
    check_connection(settings)
    try:
        return KafkaAdminClient(client_id=f"{settings.app_id}-admin", **client_config(settings))
    except KafkaError as exc:
        raise BrokerError(f"no Kafka broker answers at {settings.bootstrap_servers}; start one "
                          "with `signals broker start` or set SIGNALS_BOOTSTRAP_SERVERS") from exc


def ensure_topics(settings: Settings, extra: Iterable[str] = ()) -> list[str]:
    """Create the pipeline's topics (and `extra`) with the configured partitions; return new ones.

    An existing topic with a different partition count is an error: Faust would stop later with a
    partition mismatch between a source topic and its table's changelog.
    """
    names = [*settings.topics.all(), *extra]
    admin = admin_client(settings)
    try:
        existing = _partition_counts(admin, names)
        for name, count in existing.items():
            if count != settings.partitions:
                raise BrokerError(f"topic {name} has {count} partitions, the pipeline is "
                                  f"configured for {settings.partitions} (SIGNALS_PARTITIONS)")
        missing = [n for n in names if n not in existing]
        existed = create_topics(admin, settings, missing, dead_letters=settings.topics.dlq,
                                compacted=compacted_topics(settings))
        if settings.topics.dlq in existing or settings.topics.dlq in existed:
            warn_on_a_small_dead_letter_limit(admin, settings.topics.dlq)
        return [n for n in missing if n not in existed]
    finally:
        admin.close()


def warn_on_a_small_dead_letter_limit(admin: KafkaAdminClient, topic: str) -> int | None:
    """A dead-letter topic created elsewhere may keep Kafka's 1 MB default, too small for the
    dead letter of a large input: say so, with the fix (the worker does not alter a topic it did
    not create). Returns the topic's limit, None when it may not be read (ACLs)."""
    try:
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)],
                                           config_filter="all")
        limit = int(described["topic"][topic]["max.message.bytes"]["value"])
    except (KafkaError, KeyError, ValueError) as exc:
        log.info("dead_letter_topic_limit_unknown", topic=topic, error=repr(exc))
        return None
    if limit < DLQ_MAX_MESSAGE_BYTES:
        log.warning("dead_letter_topic_limit_too_small", topic=topic, max_message_bytes=limit,
                    wanted=DLQ_MAX_MESSAGE_BYTES,
                    fix=f"kafka-configs.sh --alter --entity-type topics --entity-name {topic} "
                        f"--add-config max.message.bytes={DLQ_MAX_MESSAGE_BYTES}")
    return limit


def compacted_topics(settings: Settings) -> frozenset[str]:
    return frozenset(getattr(settings.topics, role) for role in compacted_roles())


def create_topics(admin: KafkaAdminClient, settings: Settings, names: Iterable[str], *,
                  dead_letters: str, compacted: frozenset[str] = frozenset()) -> list[str]:
    """Create topics with the configured partitions; the dead-letter topic takes messages up to
    `DLQ_MAX_MESSAGE_BYTES`, so the dead letter of a message the input topic accepted (its bytes
    as base64 plus the reason) fits, even where the input topic's own 1 MB limit would not.
    `compacted` topics keep the latest value per key (``content.embeddings.v1``). Returns the
    names that turned out to exist already (created meanwhile, or not yet listed by the broker
    the listing came from)."""
    existed = []
    for name in names:
        configs = {"max.message.bytes": str(DLQ_MAX_MESSAGE_BYTES)} if name == dead_letters else {}
        if name in compacted:
            configs["cleanup.policy"] = "compact"
        try:
            admin.create_topics([NewTopic(name, settings.partitions,
                                          settings.replication_factor, topic_configs=configs)])
        except TopicAlreadyExistsError:
            existed.append(name)
        except InvalidReplicationFactorError as exc:
            brokers = len(admin.describe_cluster().get("brokers", []))
            raise BrokerError(
                f"cannot create topic {name}: SIGNALS_REPLICATION_FACTOR="
                f"{settings.replication_factor} but the cluster has {brokers} broker(s); set "
                f"SIGNALS_REPLICATION_FACTOR to at most {brokers}") from exc
    return existed


def ensure_topic(settings: Settings, topic: str) -> bool:
    """Create `topic` with the configured partitions and replication unless it exists (the
    broker does not create topics on first use); True when it was created here."""
    admin = admin_client(settings)
    try:
        if topic in set(admin.list_topics()):
            return False
        return not create_topics(admin, settings, [topic], dead_letters=settings.topics.dlq)
    except InvalidTopicError as exc:
        raise BrokerError(f"{topic!r} is not a valid topic name: use letters, digits, '.', '_' "
                          "and '-', at most 249 characters") from exc
    finally:
        admin.close()


def _partition_counts(admin: KafkaAdminClient, names: list[str]) -> dict[str, int]:
    known = set(admin.list_topics())
    wanted = [n for n in names if n in known]
    if not wanted:
        return {}
    return {t["name"]: len(t["partitions"]) for t in admin.describe_topics(wanted)}


def producer(settings: Settings, **options: Any) -> KafkaProducer:
    check_connection(settings)
    try:
        return KafkaProducer(acks="all", linger_ms=5, max_request_size=DLQ_MAX_MESSAGE_BYTES,
                             **client_config(settings), **options)
    except KafkaError as exc:
        raise BrokerError(f"no Kafka broker answers at {settings.bootstrap_servers}") from exc


def produce(settings: Settings, topic: str, records: Iterable[tuple[bytes | None, bytes]]) -> int:
    """Send (key, value) pairs and wait until the broker has them all; return how many."""
    client = producer(settings)
    count = 0
    try:
        futures = [client.send(topic, key=key, value=value) for key, value in records]
        client.flush()
        for future in futures:
            future.get(timeout=30)
            count += 1
    except KafkaError as exc:
        raise BrokerError(f"producing to {topic} failed after {count} records: {exc}") from exc
    finally:
        client.close()
    return count


def consumer(settings: Settings, *topics: str, group_id: str | None = None,
             from_beginning: bool = True, **options: Any) -> KafkaConsumer:
    check_connection(settings)
    try:
        return KafkaConsumer(
            *topics, group_id=group_id, enable_auto_commit=group_id is not None,
            auto_offset_reset="earliest" if from_beginning else "latest",
            **client_config(settings), **options)
    except KafkaError as exc:
        raise BrokerError(f"no Kafka broker answers at {settings.bootstrap_servers}") from exc


def read_topic(settings: Settings, topic: str, *, idle_timeout_s: float,
               from_beginning: bool = True, limit: int | None = None) -> Iterator[Any]:
    """Yield records of `topic` until `limit` were read or none came for `idle_timeout_s`."""
    client = consumer(settings, topic, from_beginning=from_beginning)
    try:
        seen, last = 0, time.monotonic()
        while (limit is None or seen < limit) and time.monotonic() - last < idle_timeout_s:
            for records in client.poll(timeout_ms=200).values():
                for record in records:
                    if limit is not None and seen >= limit:   # a poll returns up to 500
                        return
                    yield record
                    seen += 1
                    last = time.monotonic()
    finally:
        client.close()
