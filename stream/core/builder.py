"""The pipeline builder: settings (and chosen model versions) → a ready `Pipeline`.

Every entry point builds its pipeline here — the worker, replay, eval and bench — so none of the
offline tools loads Faust.
"""

from __future__ import annotations

from stream.core.enrich import Enricher
from stream.core.pipeline import Pipeline
from stream.core.validate import Clock, make_validator
from stream.models.manifest import load_manifest
from stream.settings import Settings


def build_pipeline(settings: Settings, versions: dict[str, str] | None = None,
                   run_id: str | None = None, *, clock: Clock | None = None) -> Pipeline:
    """Load and verify every model (a bad file stops here, naming it) and compile the schema.

    The models are the manifest's active ones, or those of ``settings.profile``, with `versions`
    (replay's and eval's ``--model``) over either.

    `clock` is "now" for the event-time range check of a message without a Kafka timestamp: the
    live worker passes the wall clock; offline tools pass none, so their output depends only on
    their input (a message without a timestamp is then not range-checked)."""
    manifest = load_manifest(settings.manifest_path)
    chosen = {**manifest.profile(settings.profile), **(versions or {})}
    enricher = Enricher(manifest, settings, chosen, challengers=settings.challenger_versions)
    validate = make_validator(settings.schemas_dir, settings.max_event_bytes,
                              max_future_skew_s=settings.max_future_skew_s,
                              max_event_age_s=settings.max_event_age_s, clock=clock)
    return Pipeline(validate=validate,
                    enricher=enricher, include_embedding=settings.include_embedding,
                    run_id=run_id)
