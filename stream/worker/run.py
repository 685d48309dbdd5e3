"""Start the Faust worker: settings → topics → models → app → `faust.Worker`."""

from __future__ import annotations

import time
from typing import Any

from faust.worker import Worker

from stream.buildinfo import VERSION, git_commit
from stream.connectors.kafka import ensure_topics
from stream.core.enrich import Enricher
from stream.core.pipeline import Pipeline
from stream.core.validate import make_validator
from stream.models.manifest import load_manifest
from stream.settings import Settings
from stream.worker.app import SignalsApp, create_app
from stream.worker.logs import logging_config
from stream.worker.server import OpsServer, bind_socket, web_app


def build_pipeline(settings: Settings, versions: dict[str, str] | None = None,
                   run_id: str | None = None) -> Pipeline:
    """Load and verify every model (a bad file stops here, naming it) and compile the schema."""
    enricher = Enricher(load_manifest(settings.manifest_path), settings, versions,
                        challengers=settings.challenger_versions)
    return Pipeline(validate=make_validator(settings.schemas_dir, settings.max_event_bytes),
                    enricher=enricher, include_embedding=settings.include_embedding,
                    run_id=run_id)


def run_worker(settings: Settings) -> None:
    sock = bind_socket(settings)   # first: a port in use stops the worker before anything runs
    started = time.perf_counter()
    pipeline = build_pipeline(settings)
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
