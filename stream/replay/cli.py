"""`signals replay`: argument wiring only; the work is done by `stream.replay.run.run_replay`.

Kept light at import (no Kafka, no ONNX): `signals --help` builds every subparser.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stream.cli.types import non_negative_int, positive_float
from stream.errors import ConfigError
from stream.replay.plan import (
    ReplayRequest,
    SinkSpec,
    SourceSpec,
    parse_model_overrides,
    parse_partitions,
    parse_time,
)
from stream.settings import Settings

AddOptions = Callable[[argparse.ArgumentParser], None]

EXAMPLES = """\
examples:
  signals replay --topic content.events.v1 --from-time 2026-01-05T00:00:00Z \\
                 --to-time 2026-01-06T00:00:00Z --checkpoint replay.ckpt
  signals replay --topic content.events.v1 --partitions 0,1 --from-offset 1000 --to-offset 2000 \\
                 --model embedding=minilm-l6-v2-int8-v1 --dry-run
  signals replay --file history.jsonl.gz --output signals.jsonl --aggregate   # no Kafka at all
  signals replay --engine spark --topic content.events.v1 --from-time 2026-01-01T00:00:00Z \
                 --output year.jsonl --aggregate          # the same records, as a Spark job

Offsets are inclusive-from, exclusive-to, per partition (for a file: line numbers from 1).
Times are the broker's record timestamps. Exit status: 0 done, 2 bad arguments, 130 interrupted.
"""


def add_replay(sub: Any, connection: AddOptions, processing: AddOptions) -> None:
    parser = sub.add_parser(
        "replay", help="reprocess a topic range or a JSONL file with chosen model versions",
        description="Reprocess history through the worker's pipeline into replay topics or a "
                    "file: deterministic, rate-limited, resumable.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
        conflict_handler="resolve")   # our --partitions replaces the connection group's
    source = _add_source(parser)
    _add_processing_and_sink(parser)
    connection(parser)
    processing(parser)
    source.add_argument("--partitions", dest="source_partitions", type=_arg(parse_partitions),
                        metavar="0,1", help="topic partitions to read (default: all)")
    parser.set_defaults(run=run_replay_command)


def _add_source(parser: argparse.ArgumentParser) -> Any:
    source = parser.add_argument_group("source and range")
    which = source.add_mutually_exclusive_group(required=True)
    which.add_argument("--topic", help="a Kafka topic, read without a consumer group")
    which.add_argument("--file", type=Path, help="a JSONL file, plain or gzip")
    source.add_argument("--from-offset", type=non_negative_int, metavar="N",
                        help="first offset (inclusive; a file: first line, from 1)")
    source.add_argument("--to-offset", type=non_negative_int, metavar="N",
                        help="last offset (exclusive)")
    source.add_argument("--from-time", type=_arg(parse_time), metavar="ISO-8601",
                        help="first record timestamp (inclusive), e.g. 2026-01-05T10:00:00Z")
    source.add_argument("--to-time", type=_arg(parse_time), metavar="ISO-8601",
                        help="record timestamps before this (exclusive)")
    return source


def _add_processing_and_sink(parser: argparse.ArgumentParser) -> None:
    models = parser.add_argument_group("models")
    models.add_argument("--model", action="append", default=[], metavar="TASK=VERSION",
                        help="a model version from the manifest (repeat; default: active ones)")
    models.add_argument("--index", action="store_true",
                        help="also rebuild the similarity index (SIGNALS_SIMILARITY_INDEX="
                             "pgvector): every item's vector upserted, deletions removed; "
                             "idempotent, so a re-run or a resumed run leaves the same index")
    models.add_argument("--aggregate", action="store_true",
                        help="also fold event-time windows and write them")
    sink = parser.add_argument_group("sink (default: content.signals.replay.<models tag>)")
    where = sink.add_mutually_exclusive_group()
    where.add_argument("--output", type=Path, metavar="FILE.jsonl",
                       help="write JSONL files instead of topics (.dlq / .windows siblings)")
    where.add_argument("--to-live", action="store_true",
                       help="write to the live topics (content.signals.v1 ...)")
    running = parser.add_argument_group("running")
    running.add_argument("--engine", choices=("local", "spark"), default="local",
                         help="local: this process (default); spark: a PySpark job over the "
                              "topic range (README \"Replay at scale\")")
    running.add_argument("--spark-master", metavar="URL",
                         help="with --engine spark: local[N], spark://..., yarn "
                              "(default: spark-submit's, else local[*])")
    running.add_argument("--replay-id", type=_non_empty,
                         help="default: derived from source, range, models and batch options")
    running.add_argument("--checkpoint", type=Path, metavar="PATH",
                         help="resume from / save progress to this JSON file")
    running.add_argument("--rate", type=positive_float, metavar="EVENTS_PER_S",
                         help="at most this many events per second")
    running.add_argument("--dry-run", action="store_true",
                         help="validate and count, produce nothing")
    running.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_replay_command(args: argparse.Namespace, settings: Settings) -> int:
    from stream.replay.run import run_replay

    source = SourceSpec(topic=args.topic, file=args.file, partitions=args.source_partitions,
                        from_offset=args.from_offset, to_offset=args.to_offset,
                        from_time_ms=args.from_time, to_time_ms=args.to_time)
    request = ReplayRequest(
        source=source, sink=SinkSpec(output=args.output, to_live=args.to_live),
        models=parse_model_overrides(args.model), aggregate=args.aggregate,
        replay_id=args.replay_id, checkpoint=args.checkpoint, rate=args.rate,
        dry_run=args.dry_run, progress=not args.no_progress, index=args.index)
    if args.engine == "spark":
        if args.index:
            raise ConfigError("--index runs on the local engine (one writer keeps the "
                              "near-duplicate order of the history): drop --engine spark")
        from stream.replay.spark import run_spark_replay

        return run_spark_replay(request, settings).exit_code
    return run_replay(request, settings).exit_code


def _arg(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type from a parser that raises ValueError with a readable message."""
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return convert


def _non_empty(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text.strip()
