"""Shared fixtures: settings, the real model pipeline, a real Kafka broker for integration tests.

The broker fixture uses the cluster named by ``KAFKA_BOOTSTRAP_SERVERS`` when that is set, and
otherwise starts the project's own single-node Kafka (fetched from Maven Central) on free ports,
once per test session, and stops it at the end.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from stream.connectors.broker import LocalBroker
from stream.core.builder import build_pipeline
from stream.core.pipeline import Pipeline
from stream.paths import CHECKOUT
from stream.settings import Settings

SHARED_DATASETS = CHECKOUT.parent / "shared" / "datasets"

# Machines are shared and noisy: properties are about results, never about how long one took.
hypothesis_settings.register_profile("content-signals", deadline=None)
hypothesis_settings.load_profile("content-signals")


@pytest.fixture(scope="session")
def settings() -> Settings:
    # The test data are fixed instants (2026) with arbitrary message timestamps: the event-time
    # range check would turn them into dead letters (and every fixed date into a time bomb).
    # Its own tests (test_validate, the crash test) set the bounds they check.
    return Settings.load({}, {"model_threads": 1, "max_future_skew_s": 0, "max_event_age_s": 0})


@pytest.fixture(scope="session")
def pipeline(settings: Settings) -> Pipeline:
    return build_pipeline(settings)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    existing = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if existing:
        yield existing
        return
    data_dir: Path = tmp_path_factory.mktemp("kafka")
    port = _free_port()
    controller_port = _free_port()
    while controller_port == port:   # two probes may be handed the same free port
        controller_port = _free_port()
    broker = LocalBroker(data_dir=data_dir, port=port, controller_port=controller_port)
    broker.start(timeout_s=120)
    try:
        yield broker.bootstrap
    finally:
        broker.stop(clean=True)


@pytest.fixture(scope="session")
def scram_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """The project's broker with `--auth scram` (SASL_PLAINTEXT on `port`, SASL_SSL on
    `ssl_port`, credentials and CA in `broker.scram`), once per session, on free ports."""
    ports = set()
    while len(ports) < 3:
        ports.add(_free_port())
    port, controller_port, ssl_port = sorted(ports)
    broker = LocalBroker(data_dir=tmp_path_factory.mktemp("kafka-scram"), port=port,
                         controller_port=controller_port, auth="scram", ssl_port=ssl_port)
    broker.start(timeout_s=120)
    try:
        yield broker
    finally:
        broker.stop(clean=True)
