"""`PgVectorIndex`: the same `VectorIndex` contract on PostgreSQL + pgvector, shared by workers.

One table (``SIGNALS_SIMILARITY_TABLE``, default ``content_embeddings``): the content id as
primary key, the `ItemInfo` columns (``cluster`` is added to a table made before it), and the unit
vector as ``vector(384)`` under an HNSW index with inner-product ops (for unit vectors inner
product = cosine; same M and build width as the embedded index). `upsert` is ``INSERT ... ON
CONFLICT DO UPDATE`` (every column, so a repeated upsert leaves the same row), `delete` a
``DELETE``; `query` turns the `Filter` into ``WHERE`` and lets pgvector's iterative index scan
(``hnsw.iterative_scan``, pgvector >= 0.8) keep scanning until enough rows pass it. A
micro-batch is one transaction (`batch`): one commit instead of one per upsert. The server is
durable, so `persist`/`load` do nothing and no rebuild is needed on start.

Credentials: the DSN may carry them, or libpq's environment (``PGPASSWORD``, ``PGSSLMODE`` ...)
supplies them, so a password need not appear in a setting.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector

from stream.errors import ConfigError
from stream.similarity.ann import CONNECTIVITY, EXPANSION_ADD, EXPANSION_SEARCH
from stream.similarity.index import DIM, Filter, Hit, ItemInfo, as_vector, top_hits

COLUMNS = "content_id, content_type, event_time_ms, event_id, creator_id, show_id, cluster"


class PgVectorIndex:
    kind = "pgvector"

    def __init__(self, connection: psycopg.Connection[Any], table: str, dim: int = DIM) -> None:
        if not table.isidentifier():
            raise ConfigError(f"similarity_table={table!r}; use letters, digits and _")
        self.connection, self.table, self.dim = connection, table, dim
        self._create()

    @classmethod
    def connect(cls, dsn: str, *, table: str = "content_embeddings") -> PgVectorIndex:
        try:
            connection = psycopg.connect(dsn, autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            raise ConfigError(f"SIGNALS_SIMILARITY_DSN: cannot connect ({first}); start one "
                              "with `signals db start`") from None
        connection.execute("CREATE EXTENSION IF NOT EXISTS vector")
        register_vector(connection)
        return cls(connection, table)

    def _create(self) -> None:
        t = self.table
        self.connection.execute(
            f"CREATE TABLE IF NOT EXISTS {t} (content_id text PRIMARY KEY, content_type text "
            f"NOT NULL, event_time_ms bigint NOT NULL, event_id text NOT NULL, creator_id text, "
            f"show_id text, cluster text NOT NULL DEFAULT '', "
            f"embedding vector({self.dim}) NOT NULL)")
        self.connection.execute(   # a table made before clusters: the column, '' = own id
            f"ALTER TABLE {t} ADD COLUMN IF NOT EXISTS cluster text NOT NULL DEFAULT ''")
        self.connection.execute(
            f"CREATE INDEX IF NOT EXISTS {t}_hnsw ON {t} USING hnsw (embedding vector_ip_ops) "
            f"WITH (m = {CONNECTIVITY}, ef_construction = {EXPANSION_ADD})")
        self.connection.execute(f"SET hnsw.ef_search = {EXPANSION_SEARCH}")
        self.connection.execute("SET hnsw.iterative_scan = relaxed_order")

    def __len__(self) -> int:
        row = self.connection.execute(f"SELECT count(*) FROM {self.table}").fetchone()
        return int(row[0]) if row else 0

    def upsert(self, content_id: str, vector: np.ndarray, info: ItemInfo) -> None:
        self.connection.execute(
            f"INSERT INTO {self.table} ({COLUMNS}, embedding) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (content_id) DO UPDATE SET content_type = EXCLUDED.content_type, "
            "event_time_ms = EXCLUDED.event_time_ms, event_id = EXCLUDED.event_id, "
            "creator_id = EXCLUDED.creator_id, show_id = EXCLUDED.show_id, "
            "cluster = EXCLUDED.cluster, embedding = EXCLUDED.embedding",
            (content_id, info.content_type, info.event_time_ms, info.event_id, info.creator_id,
             info.show_id, info.cluster, as_vector(vector, self.dim)))

    def delete(self, content_id: str) -> bool:
        cursor = self.connection.execute(f"DELETE FROM {self.table} WHERE content_id = %s",
                                         (content_id,))
        return cursor.rowcount > 0

    def get(self, content_id: str) -> np.ndarray | None:
        row = self.connection.execute(f"SELECT embedding FROM {self.table} WHERE content_id = %s",
                                      (content_id,)).fetchone()
        if row is None:
            return None
        value = row[0]   # pgvector's Vector (0.4+) or a numpy array (older adapters)
        return np.asarray(value.to_numpy() if hasattr(value, "to_numpy") else value,
                          dtype=np.float32)

    def query(self, vector: np.ndarray, k: int, where: Filter | None = None) -> list[Hit]:
        if k <= 0:
            return []
        query = as_vector(vector, self.dim)
        conditions, params = sql_filter(where)
        clause = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        rows = self.connection.execute(
            f"SELECT {COLUMNS}, -(embedding <#> %s) AS cosine FROM {self.table} {clause} "
            "ORDER BY embedding <#> %s LIMIT %s", (query, *params, query, k)).fetchall()
        return top_hits(((r[0], float(r[7]), ItemInfo(r[1], int(r[2]), r[3], r[4], r[5], r[6]))
                         for r in rows), k)

    def persist(self, path: Path) -> None:
        return None   # the server is durable

    def load(self, path: Path) -> None:
        return None

    def batch(self) -> AbstractContextManager[object]:
        """One transaction per micro-batch: one commit (one WAL flush) instead of one per
        statement, and all or none of the batch's writes land."""
        return self.connection.transaction()

    def clear(self) -> None:
        self.connection.execute(f"TRUNCATE {self.table}")

    def close(self) -> None:
        self.connection.close()


def sql_filter(where: Filter | None) -> tuple[list[str], list[Any]]:
    """`Filter` → SQL conditions and their parameters (the same rule as `Filter.accepts`)."""
    if where is None:
        return [], []
    conditions: list[str] = []
    params: list[Any] = []
    if where.content_types is not None:
        conditions.append("content_type = ANY(%s)")
        params.append(sorted(where.content_types))
    if where.exclude:
        conditions.append("NOT (content_id = ANY(%s))")
        params.append(sorted(where.exclude))
    if where.not_after_ms is not None:
        conditions.append("event_time_ms <= %s")
        params.append(where.not_after_ms)
    return conditions, params
