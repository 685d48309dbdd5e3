"""The pipeline builder: settings (and chosen model versions) → a ready `Pipeline`.

Every entry point builds its pipeline here — the worker, replay, eval and bench — so none of the
offline tools loads Faust.
"""

from __future__ import annotations

from stream.core.enrich import Enricher
from stream.core.pipeline import Pipeline
from stream.core.validate import make_validator
from stream.models.manifest import load_manifest
from stream.settings import Settings


def build_pipeline(settings: Settings, versions: dict[str, str] | None = None,
                   run_id: str | None = None) -> Pipeline:
    """Load and verify every model (a bad file stops here, naming it) and compile the schema."""
    enricher = Enricher(load_manifest(settings.manifest_path), settings, versions,
                        challengers=settings.challenger_versions)
    return Pipeline(validate=make_validator(settings.schemas_dir, settings.max_event_bytes),
                    enricher=enricher, include_embedding=settings.include_embedding,
                    run_id=run_id)
