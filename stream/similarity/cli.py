"""`signals similar` (query the index, or calibrate the near-duplicate threshold) and
`signals db start|stop|status` (the local PostgreSQL with pgvector).

Kept light at import: `signals --help` builds every subparser; models, Kafka and psycopg load
only when a command runs.
"""

from __future__ import annotations

import argparse
import subprocess
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stream.cli.types import positive_int
from stream.errors import ConfigError
from stream.models.manifest import ManifestEntry, ModelSpec, replace_entry
from stream.paths import CHECKOUT, SHARED_DATASETS, STATE_ROOT
from stream.settings import Settings

AddOptions = Callable[[argparse.ArgumentParser], None]

DESCRIPTION = """\
Query the similarity index: QUERY is a content id already indexed (its own vector is used and it
is left out of the answer) or any text (encoded with the worker's encoder). The embedded index
kinds (usearch, exact) are rebuilt from the compacted topic content.embeddings.v1 first; with
SIGNALS_SIMILARITY_INDEX=pgvector the database is queried directly.

--calibrate instead derives labelled near-duplicate pairs from the shared corpora, chooses the
threshold and reports precision and recall on a held-out half, for the active encoder (--out
writes the JSON; --record writes it beside the encoder as models_onnx/encoder/<version>.
near_duplicates.json and puts the threshold into the encoder's manifest entry, which is where
the worker, replay and the rebuild read it).

Exit status: 0 done, 2 bad arguments or input (``error: ...``).
"""


def add_similar(sub: Any, connection: AddOptions) -> None:
    parser = sub.add_parser("similar", help="the k most similar items to a text or content id",
                            description=DESCRIPTION,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("query", nargs="?", help="a content id or a text")
    parser.add_argument("--k", type=positive_int, default=10)
    parser.add_argument("--type", dest="types", default="",
                        help="only these content types, comma-separated (e.g. show,episode)")
    parser.add_argument("--json", action="store_true", help="one JSON object per hit")
    parser.add_argument("--similarity-index", choices=("usearch", "exact", "pgvector"))
    parser.add_argument("--similarity-dsn", help="prefer SIGNALS_SIMILARITY_DSN")
    cal = parser.add_argument_group("calibration")
    cal.add_argument("--calibrate", action="store_true",
                     help="calibrate the near-duplicate threshold on derived labelled pairs")
    cal.add_argument("--datasets-dir", type=Path, default=SHARED_DATASETS)
    cal.add_argument("--per-file", type=positive_int, default=400,   # calibration.PER_FILE
                     help="items sampled per corpus (the pool of hard negatives)")
    cal.add_argument("--originals", type=positive_int, default=60,   # calibration.ORIGINALS
                     help="originals per content kind that get edited copies")
    cal.add_argument("--seed", type=int, default=0)
    cal.add_argument("--out", type=Path, help="write the calibration JSON here")
    cal.add_argument("--record", action="store_true",
                     help="ship it: the report beside the encoder, the threshold in its entry")
    connection(parser)
    parser.set_defaults(run=run_similar)


def run_similar(args: argparse.Namespace, settings: Settings) -> int:
    if args.calibrate:
        return run_calibrate(args, settings)
    if not args.query:
        raise ConfigError("give a QUERY (a content id or a text), or --calibrate")
    import orjson

    from stream.similarity.index import Filter
    from stream.similarity.kinds import EMBEDDED_KINDS, open_index
    from stream.worker.logs import configure_logging

    configure_logging(settings)   # logs to stderr: stdout carries only the answer

    index = open_index(settings)
    try:
        if settings.similarity_index in EMBEDDED_KINDS:
            from stream.similarity.rebuild import rebuild

            rebuild(index, settings)
        vector = index.get(args.query)
        source = "content id"
        if vector is None:
            from stream.core.builder import build_pipeline

            vector = build_pipeline(settings).enricher.encoder.encode([args.query])[0]
            source = "text"
        types = frozenset(t.strip() for t in args.types.split(",") if t.strip()) or None
        where = Filter(content_types=types,
                       exclude=frozenset({args.query}) if source == "content id" else frozenset())
        hits = index.query(vector, args.k, where)
        if not args.json:
            print(f"{len(hits)} of {len(index)} items ({index.kind}), query by {source}:")
        for rank, hit in enumerate(hits, 1):
            if args.json:
                print(orjson.dumps({"rank": rank, "content_id": hit.content_id,
                                    "cosine": hit.cosine, **hit.info.to_json()}).decode())
            else:
                print(f"{rank:>3}  {hit.cosine:.4f}  {hit.info.content_type:<9} "
                      f"{hit.content_id}  ({hit.info.event_id})")
    finally:
        index.close()
    return 0


def run_calibrate(args: argparse.Namespace, settings: Settings) -> int:
    import orjson

    from stream.bench.similarity import encode
    from stream.core.builder import build_pipeline
    from stream.similarity.calibration import THRESHOLD_KEY, calibrate, derive_pairs

    encoder = build_pipeline(settings).enricher.encoder
    items, pairs, embedded = derive_pairs(
        args.datasets_dir, lambda texts: encode(texts, encoder), per_file=args.per_file,
        originals=args.originals, seed=args.seed)
    result = calibrate(pairs, embedded)
    result["provenance"] = {
        "derived_from": sorted({i.label.split(":")[0] for i in items}),
        "datasets_dir": "../shared/datasets", "items_per_file": args.per_file,
        "originals_per_kind": args.originals, "seed": args.seed,
        "encoder": encoder.version, "encoder_bucket_size": settings.encoder_bucket_size,
        "command": f"signals similar --calibrate --per-file {args.per_file} "
                   f"--originals {args.originals} --seed {args.seed}",
        "git_commit": _git_commit(), "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    held = result["held_out"]
    print(f"near-duplicate threshold {result['threshold']:.2f} (flags at most "
          f"{result['target_false_flag_rate']:.0%} of hard negatives on the calibration half); "
          f"held out: precision {held['precision']:.3f}, recall {held['recall']:.3f}, false "
          f"flags {held['false_flag_rate']:.3f} over {result['pairs']['held_out']} pairs")
    for edit, row in result["held_out_by_edit"].items():
        rate = row.get("recall", row.get("flagged_rate"))
        name = "recall" if "recall" in row else "flagged"
        print(f"  {edit:<12} {row['pairs']:>4} pairs  {name} {rate:.3f}  "
              f"median cosine {row['median_cosine']:.3f}")
    if args.record:
        record(settings, encoder.spec, result)
    elif (shipped := encoder.spec.extra(THRESHOLD_KEY)) != result["threshold"]:
        print(f"note: {encoder.version} ships {shipped} (--record replaces it)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
        print(f"wrote {args.out}")
    return 0


def record(settings: Settings, spec: ModelSpec, result: dict[str, Any]) -> None:
    """The report beside the encoder's file, its threshold and path in the encoder's entry."""
    import orjson

    from stream.similarity.calibration import REPORT_KEY, THRESHOLD_KEY

    report = f"encoder/{spec.version}.near_duplicates.json"
    spec.resolve_path(report).write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2)
                                          + b"\n")
    entry = ManifestEntry.from_json(spec.raw)
    fields = {**entry.fields, THRESHOLD_KEY: result["threshold"], REPORT_KEY: report}
    replace_entry(settings.manifest_path, replace(entry, fields=fields))
    print(f"recorded {THRESHOLD_KEY}={result['threshold']} for {spec.version} "
          f"({settings.manifest_path}, {report})")


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=CHECKOUT,
                             capture_output=True, text=True, check=False, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def add_db(sub: Any) -> None:
    parser = sub.add_parser("db", help="start, stop or inspect the local PostgreSQL + pgvector")
    parser.add_argument("action", choices=("start", "stop", "status"))
    parser.add_argument("--port", type=int, default=5433)
    parser.add_argument("--data-dir", type=Path, default=STATE_ROOT / ".kafka" / "postgres")
    parser.add_argument("--clean", action="store_true", help="with stop: delete the data")
    parser.set_defaults(run=run_db)


def run_db(args: argparse.Namespace, settings: Settings) -> int:
    from stream.connectors.database import LocalDatabase

    db = LocalDatabase(data_dir=args.data_dir, port=args.port)
    if args.action == "start":
        print(db.start())
        print(f"export SIGNALS_SIMILARITY_INDEX=pgvector SIGNALS_SIMILARITY_DSN={db.dsn}")
    elif args.action == "stop":
        print(db.stop(clean=args.clean))
    else:
        print(db.status())
        return 0 if db.is_running() else 1
    return 0
