"""Start the Faust worker: settings → topics → models → app → `faust.Worker`."""

from __future__ import annotations

from faust.worker import Worker

from stream.connectors.kafka import ensure_topics
from stream.core.enrich import Enricher
from stream.core.pipeline import Pipeline
from stream.core.validate import make_validator
from stream.models.manifest import load_manifest
from stream.settings import Settings
from stream.worker.app import create_app
from stream.worker.logs import logging_config


def build_pipeline(settings: Settings, versions: dict[str, str] | None = None,
                   run_id: str | None = None) -> Pipeline:
    """Load and verify every model (a bad file stops here, naming it) and compile the schema."""
    enricher = Enricher(load_manifest(settings.manifest_path), settings, versions,
                        challengers=settings.challenger_versions)
    return Pipeline(validate=make_validator(settings.schemas_dir, settings.max_event_bytes),
                    enricher=enricher, include_embedding=settings.include_embedding,
                    run_id=run_id)


def run_worker(settings: Settings) -> None:
    pipeline = build_pipeline(settings)
    ensure_topics(settings)
    signals_app = create_app(settings, pipeline)
    worker = Worker(signals_app.app, loglevel=settings.log_level.lower(),
                    logging_config=logging_config(settings), redirect_stdouts=False, quiet=True)
    worker.execute_from_commandline()
