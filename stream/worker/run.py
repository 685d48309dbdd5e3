"""Start the Faust worker: settings → topics → models → app → `faust.Worker`."""

from __future__ import annotations

import time
from typing import Any

from faust.worker import Worker

from stream.buildinfo import VERSION, git_commit
from stream.connectors.kafka import ensure_topics
from stream.core.builder import build_pipeline
from stream.settings import Settings
from stream.worker.app import SignalsApp, create_app
from stream.worker.logs import logging_config
from stream.worker.server import OpsServer, bind_socket, web_app


def run_worker(settings: Settings) -> None:
    sock = bind_socket(settings)   # first: a port in use stops the worker before anything runs
    started = time.perf_counter()
    pipeline = build_pipeline(settings, clock=wall_clock_ms)
    load_seconds = time.perf_counter() - started
    ensure_topics(settings)
    signals_app = create_app(settings, pipeline)
    signals_app.metrics.model_load_seconds.set(load_seconds)
    signals_app.metrics.set_build_info(VERSION, git_commit(),
                                       pipeline.enricher.versions)
    signals_app.health.models_loaded = True
    services = [] if sock is None else [ops_server(settings, signals_app, sock)]
    worker = Worker(signals_app.app, *services, loglevel=settings.log_level.lower(),
                    logging_config=logging_config(settings), redirect_stdouts=False, quiet=True)
    worker.execute_from_commandline()


def ops_server(settings: Settings, signals_app: SignalsApp, sock: Any) -> OpsServer:
    names = settings.topics
    sources = (names.events, names.enriched, names.shadow)
    return OpsServer(sock, web_app(signals_app.app, signals_app.health, signals_app.metrics,
                                   sources))


def wall_clock_ms() -> int:
    return int(time.time() * 1000)
