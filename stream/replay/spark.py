"""`signals replay --engine spark`: the same replay as a Spark batch job over Kafka history.

    driver   `plan_replay` and `resolve_topic_ranges`: the local replay's own checks, identity and
             range resolution (times → offsets), all before a JVM starts (a bad argument is one
             ConfigError line)
    read     Spark's Kafka batch source, ``assign`` + per-partition ``startingOffsets`` /
             ``endingOffsets`` of exactly those ranges: one Spark partition per Kafka partition,
             its rows in offset order (checked: `check_layout`)
    process  ``mapPartitions``: chunks of ``batch_max_size`` rows counted from the start of the
             range (the local rule, so the encoder sees the same batches), the time filter, then
             `process_batch` with the replay's pipeline, built once per Python worker (a module
             cache) with ONNX threads = the task's CPUs (``spark.task.cpus``)
    windows  (``--aggregate``) enriched records repartitioned by the partition of
             ``content.enriched.v1`` that the worker's producer gives their group (murmur2), sorted
             into the local replay's order and folded by `ReplayWindows` (the worker's
             `WindowAggregator`); no window rule lives in Spark
    write    files: every record sorted into the local replay's order (`chunk_order`), streamed
             to the driver, written into a temporary folder beside the output, then renamed into
             place; topics: Spark's Kafka sink to the versioned replay topics.

"Same records": every signal and dead letter, value byte for byte (``replay_id`` included), is the
one the local replay of the same range, models and settings writes; so is every window. Files are
even identical as files (same lines in the same order); in a topic, records of one key land in the
same partition (Kafka's default partitioner is murmur2 in both clients) but their order within it
may differ, since Spark's tasks produce concurrently.

Resumable by rerunning: a failed job leaves the previous output files untouched (the new ones
appear only when complete; Spark retries a failed task on its own); a rerun into topics produces
records again with the same keys and values (identical duplicates, consumers deduplicate on
``source``). There is no ``--checkpoint``: the job is a function of its range.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import orjson

from stream.connectors.kafka import DLQ_MAX_MESSAGE_BYTES, consumer
from stream.errors import ConfigError, SignalsError
from stream.paths import DATA_ROOT
from stream.replay.plan import Plan, ReplayRequest, plan_replay
from stream.replay.run import (
    ReplayResult,
    header,
    new_state,
    summary,
)
from stream.replay.sinks import check_output, ensure_sink_topics, output_paths
from stream.replay.sources import (
    Ranges,
    resolve_topic_ranges,
)
from stream.replay.spark_tasks import (
    DEAD_LETTERS,
    KINDS,
    SIGNALS,
    TALLY,
    WINDOWS,
    fold_windows,
    process_partition,
)
from stream.replay.state import ReplayCounts
from stream.settings import Settings

if TYPE_CHECKING:
    from pyspark import RDD
    from pyspark.sql import DataFrame, SparkSession

SPARK_VERSION = "4.2.0"   # = deploy/spark/pom.xml's spark.version and the [spark] extra's pin
DEPLOY_DIR = DATA_ROOT / "deploy" / "spark"
CONNECTOR_GLOB = "spark-sql-kafka-0-10_2.13-*.jar"



@dataclass(frozen=True, slots=True)
class SparkJob:
    """A checked replay with its ranges resolved: everything the job needs, nothing of Spark."""

    plan: Plan
    ranges: Ranges


def prepare(request: ReplayRequest, settings: Settings) -> SparkJob:
    """Every check, and the range resolution, with no JVM: what the local replay does first."""
    source = request.source
    if source.file is not None:
        raise ConfigError("--engine spark reads a topic (--topic); replay a file with the local "
                          "engine")
    for given, flag in ((request.checkpoint, "--checkpoint"), (request.rate, "--rate"),
                        (request.dry_run or None, "--dry-run")):
        if given is not None:
            raise ConfigError(f"{flag} is the local engine's; a Spark replay is rerun whole "
                              "(its files appear only when complete, topics get identical "
                              "duplicates)")
    plan = plan_replay(request, settings)
    if request.sink.output is not None:
        check_output(request.sink.output)
        folder = request.sink.output.resolve().parent
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise ConfigError(f"--output {request.sink.output}: {folder} is not a writable "
                              "folder")
    kafka_options(settings)   # security settings the Spark connector cannot take
    require_pyspark()
    client = consumer(settings, client_id=f"{settings.app_id}-replay")
    try:
        ranges = resolve_topic_ranges(client, source)
    finally:
        client.close()
    return SparkJob(plan, ranges)


def run_spark_replay(request: ReplayRequest, settings: Settings, *, out: TextIO | None = None,
                     spark: SparkSession | None = None) -> ReplayResult:
    """Check and resolve, start Spark (or use `spark`), run the job; print header and summary."""
    out = out or sys.stdout
    job = prepare(request, settings)
    state = new_state(job.plan, job.ranges)
    print(header(job.plan, state) + "; engine spark", file=out, flush=True)
    own = spark is None
    session = spark_session(settings) if spark is None else spark
    try:
        started = time.monotonic()
        counts = execute(session, job)
        elapsed = time.monotonic() - started
    finally:
        if own:
            session.stop()
    state.counts, state.finished = counts, True
    result = ReplayResult(job.plan.replay_id, job.plan.sink_name, counts, counts, elapsed)
    print(summary(result, job.plan, state), file=out, flush=True)
    return result


# -- the driver ---------------------------------------------------------------------------------

def require_pyspark() -> None:
    if importlib.util.find_spec("pyspark") is None:
        raise ConfigError("--engine spark needs PySpark: pip install 'content-signals[spark]' "
                          f"(pyspark=={SPARK_VERSION})")
    import pyspark

    if pyspark.__version__ != SPARK_VERSION:
        raise ConfigError(f"PySpark {pyspark.__version__} is installed; the Kafka connector in "
                          f"deploy/spark is for Spark {SPARK_VERSION}: pip install "
                          f"pyspark=={SPARK_VERSION}")


def kafka_options(settings: Settings) -> dict[str, str]:
    """The connection settings as Spark's Kafka source and sink take them (``kafka.*``)."""
    options = {"kafka.bootstrap.servers": settings.bootstrap_servers,
               "kafka.security.protocol": settings.security_protocol}
    if settings.security_protocol.startswith("SASL"):
        module = ("org.apache.kafka.common.security.plain.PlainLoginModule"
                  if settings.sasl_mechanism == "PLAIN" else
                  "org.apache.kafka.common.security.scram.ScramLoginModule")
        user, password = _jaas(settings.sasl_username), _jaas(settings.sasl_password)
        options |= {"kafka.sasl.mechanism": settings.sasl_mechanism,
                    "kafka.sasl.jaas.config":
                        f'{module} required username="{user}" password="{password}";'}
    if "SSL" in settings.security_protocol:
        if settings.ssl_certfile or settings.ssl_keyfile:
            raise ConfigError("--engine spark does not take SIGNALS_SSL_CERTFILE/_KEYFILE (mTLS); "
                              "give the executors a keystore with spark-submit --conf instead")
        if settings.ssl_cafile:
            options |= {"kafka.ssl.truststore.type": "PEM",
                        "kafka.ssl.truststore.location": settings.ssl_cafile}
    return options


def _jaas(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def connector_jars(deploy_dir: Path = DEPLOY_DIR) -> list[Path]:
    """Spark's Kafka connector and its dependencies, fetched from Maven Central once."""
    lib = deploy_dir / "lib"
    if not any(lib.glob(CONNECTOR_GLOB)):
        if shutil.which("mvn") is None:
            raise ConfigError(f"{lib} has no Kafka connector for Spark and Maven (mvn) is not on "
                              "PATH to fetch it; run `make spark`")
        command = ["mvn", "-q", "-B", "-f", str(deploy_dir / "pom.xml"),
                   "dependency:copy-dependencies"]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise ConfigError("fetching Spark's Kafka connector from Maven Central failed:\n"
                              + (done.stdout + done.stderr)[-2000:])
    return sorted(lib.glob("*.jar"))


def spark_session(settings: Settings) -> SparkSession:
    """The session: spark-submit's master and conf when there is one, else local mode, plus the
    connector's jars. A local master binds to the loopback and runs this Python on the workers."""
    jars = connector_jars()
    from pyspark import SparkConf
    from pyspark.sql import SparkSession

    submitted = SparkConf()   # spark-submit's --master, --conf and --jars, when it started us
    master = settings.spark_master or submitted.get("spark.master") or "local[*]"
    given = [j for j in (submitted.get("spark.jars") or "").split(",") if j]
    builder = (SparkSession.builder.master(master).appName(f"{settings.app_id}-replay")
               .config("spark.jars", ",".join([*given, *map(str, jars)]))
               .config("spark.ui.showConsoleProgress", "false"))
    if master.startswith("local"):
        # PySpark starts its workers with $PYSPARK_PYTHON (default: python3 on PATH, which may
        # lack this package's dependencies); locally, that is this interpreter
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = (builder.config("spark.driver.host", "127.0.0.1")
                   .config("spark.driver.bindAddress", "127.0.0.1"))
    session: SparkSession = builder.getOrCreate()
    session.sparkContext.setLogLevel("WARN")
    return session


def execute(spark: SparkSession, job: SparkJob) -> ReplayCounts:
    """Read, process, [fold windows], write; the counters, from the tasks' tallies."""
    from pyspark import StorageLevel

    plan = job.plan
    processed = read_range(spark, job).rdd.mapPartitions(partial(process_partition, plan))
    processed.persist(StorageLevel.MEMORY_AND_DISK)   # read by the tally, the writes, the folds
    try:
        tallies = processed.filter(lambda row: row[0] == TALLY).map(lambda row: row[1]).collect()
        counts = check_layout(tallies, job.ranges)
        records = processed.filter(lambda row: row[0] in (SIGNALS, DEAD_LETTERS))
        if plan.request.aggregate:
            windows = fold_windows(processed, plan).persist(StorageLevel.MEMORY_AND_DISK)
            counts.windows = windows.count()
            records = records.union(windows)
        if plan.request.sink.output is not None:
            write_files(records, plan, plan.request.sink.output)
        else:
            write_topics(spark, records, plan)
    finally:
        processed.unpersist()
    return counts


def read_range(spark: SparkSession, job: SparkJob) -> DataFrame:
    """Exactly the resolved ranges, one Spark partition per Kafka partition (no minPartitions:
    a split partition would cut its chunks elsewhere than the local replay)."""
    from pyspark.sql import functions

    topic = job.plan.request.source.topic or ""
    active = {p: r for p, r in sorted(job.ranges.items()) if r[0] < r[1]}
    offsets = {which: orjson.dumps({topic: {str(p): r[i] for p, r in active.items()}}).decode()
               for i, which in enumerate(("startingOffsets", "endingOffsets"))}
    frame = (spark.read.format("kafka").options(**kafka_options(job.plan.settings))
             .option("assign", orjson.dumps({topic: sorted(active)}).decode())
             .options(**offsets).option("failOnDataLoss", "true").load())
    return frame.select("partition", "offset", functions.unix_millis("timestamp").alias("ts"),
                        "key", "value")


def check_layout(tallies: list[tuple[int, int, int, ReplayCounts]],
                 ranges: Mapping[int, tuple[int, int]]) -> ReplayCounts:
    """Each Kafka partition was read whole by one task, inside its range; the summed counters."""
    seen: dict[int, int] = {}
    counts = ReplayCounts()
    for partition, first, last, tally in tallies:
        seen[partition] = seen.get(partition, 0) + 1
        start, stop = ranges.get(partition, (0, 0))
        if not start <= first <= last < stop:
            raise SignalsError(f"Spark read offsets [{first}, {last}] of partition {partition}, "
                               f"outside the replay's range [{start}, {stop})")
        counts.add(tally)
    split = sorted(p for p, n in seen.items() if n > 1)
    if split:
        raise SignalsError(f"Spark split Kafka partition {split[0]} between tasks; its batches "
                           "would differ from the local replay's (do not set minPartitions)")
    return counts


def write_files(records: RDD[Any], plan: Plan, output: Path) -> None:
    """The records in the local replay's order into a temporary folder, then renamed in place."""
    paths = output_paths(output)
    kinds = [SIGNALS, DEAD_LETTERS] + ([WINDOWS] if plan.request.aggregate else [])
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.spark-", dir=output.resolve().parent))
    try:
        handles = {kind: (staging / paths[KINDS[kind]].name).open("wb") for kind in kinds}
        try:
            ordered = records.sortBy(lambda row: (row[0], row[1]))
            for kind, _, _, value in ordered.toLocalIterator():
                handles[kind].write(value + b"\n")
            for handle in handles.values():
                handle.flush()
                os.fsync(handle.fileno())
        finally:
            for handle in handles.values():
                handle.close()
        for kind in kinds:
            os.replace(staging / paths[KINDS[kind]].name, paths[KINDS[kind]])
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_topics(spark: SparkSession, records: RDD[Any], plan: Plan) -> None:
    """Spark's Kafka sink into the replay topics (created first, as the local replay does)."""
    assert plan.topics is not None
    names = {SIGNALS: plan.topics.signals, DEAD_LETTERS: plan.topics.dlq,
             WINDOWS: plan.topics.windows}
    wanted = [names[SIGNALS], names[DEAD_LETTERS]] + ([names[WINDOWS]]
                                                      if plan.request.aggregate else [])
    ensure_sink_topics(plan.settings, wanted, dead_letters=plan.topics.dlq)
    rows = records.map(lambda row: (names[row[0]], row[2], row[3]))
    frame = spark.createDataFrame(rows, "topic string, key binary, value binary")
    (frame.write.format("kafka").options(**kafka_options(plan.settings))
     .option("kafka.acks", "all").option("kafka.max.request.size", str(DLQ_MAX_MESSAGE_BYTES))
     .save())
