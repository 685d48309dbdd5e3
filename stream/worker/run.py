"""Start the Faust worker: settings → topics → models → app → `faust.Worker`."""

from __future__ import annotations

import time

from faust.worker import Worker

from stream.connectors.kafka import ensure_topics
from stream.core.builder import build_pipeline
from stream.settings import Settings
from stream.worker.app import create_app
from stream.worker.logs import logging_config


def run_worker(settings: Settings) -> None:
    pipeline = build_pipeline(settings, clock=wall_clock_ms)
    ensure_topics(settings)
    signals_app = create_app(settings, pipeline)
    worker = Worker(signals_app.app, loglevel=settings.log_level.lower(),
                    logging_config=logging_config(settings), redirect_stdouts=False, quiet=True)
    worker.execute_from_commandline()


def wall_clock_ms() -> int:
    return int(time.time() * 1000)
