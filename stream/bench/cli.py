"""`signals bench`: arguments and the printed table; the measuring is done by `stream.bench.run`.

Kept light at import (no ONNX, no numpy): `signals --help` builds every subparser.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from stream.cli.types import positive_int
from stream.errors import ConfigError
from stream.paths import SHARED_DATASETS
from stream.settings import Settings

DEFAULT_BATCH_SIZES = (1, 8, 32, 64)
DEFAULT_EVENTS = 384
DEFAULT_BUCKET_SIZES = (8, 16, 32)

DESCRIPTION = """\
Measure the worker's code path (`process_batch` with the manifest's models) in one run, so the
ratios between its numbers are meaningful on a shared machine: throughput and per-batch latency
per batch size, where the time goes (validation, encoder, heads and language, output records),
length-bucketed encoding against padding every batch to its longest text, model load time and
peak RSS. Writes a JSON result and prints a short table.

Exit status: 0 measured, 2 bad arguments or input (``error: ...``).
"""


def add_bench(sub: Any) -> None:
    parser = sub.add_parser(
        "bench", help="benchmark the processing path; writes a JSON result",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, action="append", metavar="FILE.jsonl",
                        help="content events, one per line, plain or gzip (repeat; default: "
                             "tests/golden/events.jsonl and deploy/demo/events.jsonl)")
    parser.add_argument("--events", type=positive_int, default=DEFAULT_EVENTS, metavar="N",
                        help=f"events per measurement, the input cycled (default {DEFAULT_EVENTS})")
    parser.add_argument("--batch-sizes", type=batch_sizes, default=DEFAULT_BATCH_SIZES,
                        metavar="1,8,...", help="batch sizes to measure (default "
                        f"{','.join(map(str, DEFAULT_BATCH_SIZES))}); stages and bucketing "
                        "are measured at the largest")
    parser.add_argument("--bucket-sizes", type=batch_sizes, default=DEFAULT_BUCKET_SIZES,
                        metavar="8,16,...", help="encoder bucket sizes compared with padding "
                        "each batch to its longest text, at the largest batch size (default "
                        f"{','.join(map(str, DEFAULT_BUCKET_SIZES))}, plus the configured one)")
    parser.add_argument("--seed", type=int, default=0,
                        help="the input is shuffled with this seed before cycling")
    parser.add_argument("--out", type=Path, metavar="PATH",
                        help="the JSON result (default: bench-results/bench-<UTC time>.json)")
    parser.add_argument("--live", action="store_true",
                        help="also run the real worker on a backlog on a fresh local broker and "
                             "compare its events/s with process_batch's (needs Java)")
    parser.add_argument("--live-threads", type=batch_sizes, metavar="1,2,...",
                        help="with --live: run the worker once per ONNX thread count, each "
                             "against process_batch at the same count (default: 1, 2 and "
                             "--model-threads)")
    parser.add_argument("--live-workers", type=batch_sizes, default=(1,), metavar="1,2,...",
                        help="with --live: also run N worker processes in one group (the "
                             "partitions split between them) at each thread count: threads or "
                             "processes, which gives one machine more events/s (default 1)")
    parser.add_argument("--soak", type=positive_int, metavar="N",
                        help="instead: N events through the real worker on a fresh local broker, "
                             "its RSS read as it goes (issue #11: growth < 10 %% from N/10 to N; "
                             "hours at the default profile, use SIGNALS_PROFILE=fast)")
    _add_similarity_arguments(parser)
    group = parser.add_argument_group("processing")
    group.add_argument("--encoder-bucket-size", type=positive_int, metavar="N",
                       help="the encoder's length bucket for the throughput runs")
    group.add_argument("--model-threads", type=positive_int, metavar="N")
    group.add_argument("--model-spinning", action=argparse.BooleanOptionalAction, default=None,
                       help="ONNX Runtime threads busy-wait between calls; the other choice is "
                            "measured beside it")
    group.add_argument("--models-dir", type=Path, metavar="DIR", help="holds manifest.json")
    parser.set_defaults(run=run_bench_command)


def _add_similarity_arguments(parser: argparse.ArgumentParser) -> None:
    sim = parser.add_argument_group(
        "similarity index (--similarity: measure the ANN libraries instead of process_batch)")
    sim.add_argument("--similarity", action="store_true",
                     help="recall@10 vs exact, inserts/s, queries/s and memory per million "
                          "vectors of usearch, hnswlib and faiss-cpu")
    sim.add_argument("--vectors", type=positive_int, default=50_000, metavar="N",
                     help="vectors per data set (default 50000)")
    sim.add_argument("--queries", type=positive_int, default=1_000, metavar="N",
                     help="held-out query vectors (default 1000)")
    sim.add_argument("--real-per-file", type=positive_int, default=500, metavar="N",
                     help="texts encoded per shared corpus for the real-ish set (default 500)")
    sim.add_argument("--datasets-dir", type=Path, default=SHARED_DATASETS, metavar="DIR",
                     help="the shared corpora (default ../shared/datasets; without them, the "
                          "golden and demo events)")


def batch_sizes(text: str) -> tuple[int, ...]:
    """``"1,8,32"`` → (1, 8, 32): distinct, ascending, each at least 1."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        raise argparse.ArgumentTypeError("give at least one batch size, e.g. 1,8,32")
    return tuple(sorted({positive_int(part) for part in parts}))


def run_bench_command(args: argparse.Namespace, settings: Settings) -> int:
    from stream.bench.run import BenchRequest, run_bench

    out = args.out or Path("bench-results") / f"bench-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    if args.similarity:
        return run_similarity_command(args, settings, out)
    if args.soak:
        return run_soak_command(args, settings, out)
    request = BenchRequest(data=tuple(args.data or ()), events=args.events,
                           batch_sizes=args.batch_sizes, out=out, seed=args.seed,
                           bucket_sizes=args.bucket_sizes, live=args.live,
                           live_threads=args.live_threads or (1, 2, settings.model_threads),
                           live_workers=args.live_workers)
    print("\n".join(bench_summary(run_bench(request, settings))))
    print(f"wrote {out}")
    return 0


def run_soak_command(args: argparse.Namespace, settings: Settings, out: Path) -> int:
    import orjson

    from stream.bench.run import DEFAULT_DATA, cycle, read_events, writable
    from stream.bench.soak import soak, soak_summary

    writable(out)
    messages = [m for path in (args.data or DEFAULT_DATA) for m in read_events(path)]
    result = soak(settings, cycle(messages, len(messages), args.seed), args.soak)
    out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    print("\n".join(soak_summary(result)))
    print(f"wrote {out}")
    return 0


def run_similarity_command(args: argparse.Namespace, settings: Settings, out: Path) -> int:
    import orjson

    from stream.bench.run import DEFAULT_DATA
    from stream.bench.similarity import (
        encode,
        random_vectors,
        real_texts,
        realish_vectors,
        run_similarity_bench,
    )
    from stream.core.builder import build_pipeline

    if args.queries >= args.vectors:
        raise ConfigError(f"--queries {args.queries} must be fewer than --vectors {args.vectors}")
    texts = real_texts(args.datasets_dir if args.datasets_dir.is_dir() else None,
                       args.real_per_file, DEFAULT_DATA)
    real = encode(texts, build_pipeline(settings).enricher.encoder)
    datasets = {"random": random_vectors(args.vectors, real.shape[1], args.seed + 1),
                "real-ish": realish_vectors(real, args.vectors, args.seed + 2)}
    result = run_similarity_bench(datasets, args.queries, args.seed)
    result["input"] = {"real_texts": len(texts), "datasets_dir": str(args.datasets_dir),
                       "vectors": args.vectors}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    print("\n".join(similarity_summary(result)))
    print(f"wrote {out}")
    return 0


def similarity_summary(result: dict[str, Any]) -> list[str]:
    lines = ["data set  library            recall@10  inserts/s  queries/s  MiB/1M (index, RSS)"]
    for name, data in result["datasets"].items():
        for run in data["runs"]:
            lines.append(
                f"{name:<9} {run['name']:<18} {run['recall_at_10']:>9.4f}"
                f"  {run.get('inserts_per_s', float('nan')):>9.0f}  {run['queries_per_s']:>9.0f}"
                f"  {run['index_mib_per_million']:>7.0f}, "
                f"{run.get('rss_growth_mib_per_million', float('nan')):.0f}"
                + ("" if run["can_delete_and_replace"] else "  (cannot delete)"))
    return lines


def bench_summary(result: dict[str, Any]) -> list[str]:
    env, stage, bucket = result["environment"], result["stages"], result["bucketing"]
    lines = [f"bench: {result['input']['events']} events, model_threads={env['model_threads']}, "
             f"encoder_bucket_size={env['encoder_bucket_size']}, {env['cpus_usable']} CPUs",
             "batch  events/s  x smallest  p50 ms  p95 ms  max ms  signals  dead letters"]
    lines += [f"{r['batch_size']:>5}  {r['events_per_s']:>8.1f}"
              f"  {r['throughput_vs_smallest_batch']:>10.2f}  {r['latency_ms']['p50']:>6.1f}"
              f"  {r['latency_ms']['p95']:>6.1f}  {r['latency_ms']['max']:>6.1f}"
              f"  {r['signals']:>7}  {r['dead_letters']:>12}" for r in result["throughput"]]
    share = stage["share_of_process_batch"]
    lines.append(f"time at batch {stage['batch_size']}: " + ", ".join(
        f"{name.replace('_', ' ')} {value:.0%}" for name, value in share.items()))
    lines.append(f"encoder at batch {bucket['batch_size']} ({bucket['real_tokens']} real tokens): "
                 + ", ".join(f"{v['name'].replace('_', ' ')} {v['tokens']} tokens "
                             f"x{v['speedup_vs_pad_to_longest']:.2f}" for v in bucket["variants"]))
    for r in result["thread_spinning"]:
        on, off = r["spinning"], r["no_spinning"]
        lines.append(f"thread spinning at batch {r['batch_size']}: on {on['events_per_s']:.1f} "
                     f"events/s, {on['cpu_ms_per_event']:.1f} CPU ms/event; off "
                     f"{off['events_per_s']:.1f}, {off['cpu_ms_per_event']:.1f}")
    lines += profile_summary(result["profiles"])
    if "live_worker" in result:
        live = result["live_worker"]
        lines.append(f"live worker on a backlog of {live['events']} events (batch "
                     f"{live['batch_max_size']}, {live['partitions']} partitions):")
        lines += [f"  {layout(run)}{run['model_threads']} ONNX thread(s): "
                  f"{run['live_worker_events_per_s']:.1f} events/s, process_batch "
                  f"{run['process_batch_events_per_s']:.1f}: x{run['live_vs_process_batch']:.2f}"
                  f"; through the index stage {run['through_index_events_per_s']:.1f} events/s"
                  f" x{run['through_index_vs_process_batch']:.2f}"
                  for run in live["runs"]]
    rss = result["peak_rss_mib"]
    lines.append(f"model load {result['model_load_s']:.2f} s; peak RSS {rss['after_load']:.0f} "
                 f"MiB after load, {rss['after_throughput']:.0f} after the batch sizes, "
                 f"{rss['after_run']:.0f} after the run")
    return lines


def layout(run: dict[str, Any]) -> str:
    """"2 workers x " before a live run's thread count when it ran several worker processes."""
    workers = run.get("workers", 1)
    return f"{workers} workers x " if workers > 1 else ""


def served_by(shares: dict[str, float], own: str) -> str:
    """The items other encoders served (a cascade's escalations, the language tier)."""
    others = [f"{encoder} {share:.0%}" for encoder, share in shares.items() if encoder != own]
    return f" (items also served by {', '.join(others)})" if others else ""


def profile_summary(profiles: dict[str, Any]) -> list[str]:
    naive = profiles["naive_agent"]
    lines = [f"profiles at batch {profiles['batch_size']} against a naive agent "
             f"({naive['encoder']} alone, one text per call padded to {naive['padded_to']}): "
             f"{naive['texts_per_s']:.1f} texts/s"]
    for row in profiles["profiles"]:
        losses = [f"{task} {metric} {delta:+.3f}" for task, deltas in row["vs_default"].items()
                  for metric, delta in deltas.items() if delta <= -0.01]
        lines.append(f"  {row['profile']:<16} {row['events_per_s']:>8.1f} events/s  "
                     f"x{row['vs_naive_agent']:.2f} naive  encoder {row['models']['embedding']}"
                     + served_by(row.get("served_by", {}), row['models']['embedding'])
                     + (f"; loses >1 point vs default: {', '.join(losses)}" if losses else ""))
    return lines
