"""The two replay engines on the same topic range: events/s, and per core, local next to Spark.

    python -m stream.bench.engines --events 1200 --spark-master local[2] \\
        --out bench-results/engines.json        # needs a broker: signals broker start

The bench's corpus (golden set and demo events, labels dropped, shuffled with a fixed seed, cycled
to ``--events``) is produced to a new topic with ``SIGNALS_PARTITIONS`` partitions, then replayed
to files by the local engine (one process, ``model_threads`` ONNX threads: its cores) and by the
Spark engine (its cores: Spark's default parallelism, one ONNX thread per task). The Spark job runs
twice in one session and the second is timed: its Python workers have their models loaded, as on
a cluster after the first minute. The local replay's rate excludes its model load too. Both
outputs are compared (they must be byte-identical). Absolute numbers do not travel; the machines
here are shared.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from stream.bench.run import DEFAULT_DATA, cycle, read_events, writable
from stream.connectors.kafka import ensure_topics, produce
from stream.errors import SignalsError
from stream.replay.plan import ReplayRequest, SinkSpec, SourceSpec
from stream.replay.run import ReplayResult, run_replay
from stream.replay.sinks import output_paths
from stream.settings import Settings


def compare_engines(settings: Settings, events: int, out: Path, seed: int = 0) -> dict[str, Any]:
    from stream.replay.spark import run_spark_replay, spark_session

    writable(out)
    corpus = cycle([m for path in DEFAULT_DATA for m in read_events(path)], events, seed)
    settings = settings.replace(topic_prefix=f"bench-{uuid.uuid4().hex[:8]}.")
    ensure_topics(settings)
    produce(settings, settings.topics.events, [(m.key, m.value or b"") for m in corpus])
    with tempfile.TemporaryDirectory(prefix="engines-", dir=out.parent) as folder:
        work = Path(folder)

        def request(name: str) -> ReplayRequest:
            (work / name).mkdir()
            return ReplayRequest(SourceSpec(topic=settings.topics.events),
                                 SinkSpec(output=work / name / "out.jsonl"), progress=False)

        quiet = open(os.devnull, "w")   # noqa: SIM115 -- closed below
        try:
            local = run_replay(request("local"), settings, out=quiet)
            spark = spark_session(settings)
            try:
                cores = spark.sparkContext.defaultParallelism
                run_spark_replay(request("warm"), settings, out=quiet, spark=spark)
                remote = run_spark_replay(request("spark"), settings, out=quiet, spark=spark)
            finally:
                spark.stop()
        finally:
            quiet.close()
        identical = all(path.read_bytes() == output_paths(work / "spark" / "out.jsonl")[kind]
                        .read_bytes() for kind, path in output_paths(work / "local" /
                                                                     "out.jsonl").items()
                        if kind != "windows")
    result = {"events": events, "partitions": settings.partitions,
              "batch_max_size": settings.batch_max_size, "identical_outputs": identical,
              "local": _rates(local, settings.model_threads),
              "spark": _rates(remote, cores) | {"master": settings.spark_master or "local[*]"},
              "cpus": os.cpu_count()}
    out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    return result


def _rates(result: ReplayResult, cores: int) -> dict[str, Any]:
    rate = result.counts.read / result.elapsed_s if result.elapsed_s > 0 else 0.0
    return {"cores": cores, "elapsed_s": round(result.elapsed_s, 2),
            "events_per_s": round(rate, 1), "events_per_s_per_core": round(rate / cores, 1)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stream.bench.engines",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=1200)
    parser.add_argument("--spark-master", default="local[2]")
    parser.add_argument("--out", type=Path, default=Path("bench-results") / "engines.json")
    args = parser.parse_args(argv)
    try:
        settings = Settings.load(os.environ, {"spark_master": args.spark_master})
        result = compare_engines(settings, args.events, args.out)
    except SignalsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
