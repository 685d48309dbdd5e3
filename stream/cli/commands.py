"""Handlers of the `signals` subcommands: argument wiring and printing, nothing else."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stream.connectors.broker import LocalBroker
from stream.connectors.jsonl import keyed_lines, open_input, read_lines
from stream.paths import DATA_ROOT, STATE_ROOT
from stream.settings import Settings

AddOptions = Callable[[argparse.ArgumentParser], None]
Subparsers = Any


def add_broker(sub: Subparsers) -> None:
    parser = sub.add_parser("broker", help="start, stop or inspect the local Kafka broker")
    parser.add_argument("action", choices=("start", "stop", "status"))
    parser.add_argument("--port", type=int, default=9092)
    parser.add_argument("--controller-port", type=int, default=None,
                        help="KRaft controller port (default: port + 1)")
    parser.add_argument("--ssl-port", type=int, default=None,
                        help="with --auth scram: the SASL_SSL port (default: port + 2)")
    parser.add_argument("--auth", choices=("none", "scram"), default="none",
                        help="scram: SASL SCRAM-SHA-512 on --port (SASL_PLAINTEXT) and --ssl-port "
                             "(SASL_SSL, a generated CA); prints the client settings")
    parser.add_argument("--data-dir", type=Path, default=STATE_ROOT / ".kafka" / "broker")
    parser.add_argument("--clean", action="store_true", help="with stop: delete the broker's data")
    parser.set_defaults(run=run_broker)


def run_broker(args: argparse.Namespace, settings: Settings) -> int:
    broker = LocalBroker(data_dir=args.data_dir, port=args.port,
                         controller_port=args.controller_port or args.port + 1,
                         auth=args.auth, ssl_port=args.ssl_port or args.port + 2)
    if args.action == "start":
        print(broker.start())
    elif args.action == "stop":
        print(broker.stop(clean=args.clean))
    else:
        print(broker.status())
        return 0 if broker.is_running() else 1
    return 0


def add_worker(sub: Subparsers, connection: AddOptions, processing: AddOptions) -> None:
    parser = sub.add_parser("worker", help="run the Faust worker (enrich + aggregate)")
    connection(parser)
    processing(parser)
    parser.set_defaults(run=run_worker_command)


def run_worker_command(args: argparse.Namespace, settings: Settings) -> int:
    from stream.worker.logs import configure_logging
    from stream.worker.run import run_worker

    configure_logging(settings)
    run_worker(settings)
    return 0


def add_produce(sub: Subparsers, connection: AddOptions) -> None:
    parser = sub.add_parser("produce", help="send a JSONL file of events to the input topic")
    parser.add_argument("file", type=Path, help="one event per line; '-' reads stdin")
    parser.add_argument("--topic", help="default: the input topic (content.events.v1)")
    connection(parser)
    parser.set_defaults(run=run_produce)


def run_produce(args: argparse.Namespace, settings: Settings) -> int:
    from stream.connectors.kafka import ensure_topic, produce

    topic = args.topic or settings.topics.events
    with open_input(args.file) as handle:   # fail on a bad path before connecting to Kafka
        if ensure_topic(settings, topic):
            print(f"created topic {topic} ({settings.partitions} partitions, replication "
                  f"{settings.replication_factor})", file=sys.stderr)
        count = produce(settings, topic, keyed_lines(read_lines(handle)))
    print(f"produced {count} records to {topic}")
    return 0


def add_tail(sub: Subparsers, connection: AddOptions) -> None:
    parser = sub.add_parser("tail", help="print a topic's records, one JSON value per line")
    parser.add_argument("topic")
    parser.add_argument("--limit", type=int, default=None, help="stop after N records")
    parser.add_argument("--idle-timeout", type=float, default=5.0,
                        help="stop when nothing arrived for this many seconds")
    parser.add_argument("--latest", action="store_true", help="only records that arrive from now")
    connection(parser)
    parser.set_defaults(run=run_tail)


def run_tail(args: argparse.Namespace, settings: Settings) -> int:
    from stream.connectors.kafka import read_topic

    for record in read_topic(settings, args.topic, idle_timeout_s=args.idle_timeout,
                             from_beginning=not args.latest, limit=args.limit):
        print(record.value.decode("utf-8", errors="replace"), flush=True)
    return 0


def add_demo(sub: Subparsers) -> None:
    parser = sub.add_parser("demo", help="run the whole pipeline on sample events and print it")
    parser.add_argument("--events", type=Path,
                        default=DATA_ROOT / "deploy" / "demo" / "events.jsonl")
    parser.add_argument("--port", type=int, default=9192, help="port of the demo's own broker")
    parser.add_argument("--timeout", type=float, default=180.0)
    parser.add_argument("--keep-broker", action="store_true",
                        help="leave the demo broker running afterwards")
    parser.set_defaults(run=run_demo)


def run_demo(args: argparse.Namespace, settings: Settings) -> int:
    from stream.cli.demo import Demo

    return Demo(settings, events=args.events, port=args.port, timeout_s=args.timeout,
                keep_broker=args.keep_broker).run()
