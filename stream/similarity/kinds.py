"""The one registry of index kinds: ``SIGNALS_SIMILARITY_INDEX`` names one of `INDEX_KINDS`.

* ``usearch`` (default): embedded HNSW in the worker's memory, rebuilt from
  ``content.embeddings.v1`` on start;
* ``exact``: embedded brute force (the reference; small catalogues and tests);
* ``pgvector``: PostgreSQL + pgvector at ``SIGNALS_SIMILARITY_DSN``, shared by every worker.

Each builder imports its library only when chosen, so the others need not be installed.
"""

from __future__ import annotations

from collections.abc import Callable

from stream.errors import ConfigError
from stream.settings import Settings
from stream.similarity.index import VectorIndex


def _usearch(settings: Settings) -> VectorIndex:
    from stream.similarity.ann import UsearchIndex

    return UsearchIndex()


def _exact(settings: Settings) -> VectorIndex:
    from stream.similarity.exact import ExactIndex

    return ExactIndex()


def _pgvector(settings: Settings) -> VectorIndex:
    from stream.similarity.pgvector import PgVectorIndex

    return PgVectorIndex.connect(settings.similarity_dsn, table=settings.similarity_table)


INDEX_KINDS: dict[str, Callable[[Settings], VectorIndex]] = {
    "usearch": _usearch, "exact": _exact, "pgvector": _pgvector}
EMBEDDED_KINDS = frozenset({"usearch", "exact"})


def open_index(settings: Settings) -> VectorIndex:
    builder = INDEX_KINDS.get(settings.similarity_index)
    if builder is None:   # Settings.check refuses this first; kept for direct callers
        raise ConfigError(f"similarity_index={settings.similarity_index!r}; use one of "
                          f"{tuple(INDEX_KINDS)}")
    return builder(settings)
