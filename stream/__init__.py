"""content-signals: Kafka content events → ONNX model signals and windowed aggregates.

Reading guide, in the order data flows (one subpackage per room):

1. `stream.settings`      the one frozen `Settings` (``SIGNALS_*`` environment, CLI flags);
                          `stream.errors` the exception types and `Rejection` (errors as data).
2. `stream.core`          the pure core. `records` (`RawMessage` in, `ContentEvent` after
                          validation), `validate` (bytes → event or rejection), `batching`
                          (micro-batches, length buckets), `enrich` (every model over one batch),
                          `rules` (flags, aggregation group), `pipeline` (`process_batch`: the one
                          code path of the worker, replay, eval and bench), `outputs` (the typed
                          records it returns; sinks serialise them), `topics` (the registry of
                          topics), `builder` (`build_pipeline`).
3. `stream.models`        the model suite: `manifest` (the manifest contract), `onnx_session`
                          (sha256-verified ONNX), `encoder`, `heads` (classifiers → signals),
                          `kinds` (the one dispatch of model kinds), `langid_features`,
                          `shadow` (champion vs challenger windows, PSI, the drift reference).
4. `stream.windows`       event-time windows: `kinds` (one class per window kind), `aggregator`
                          (assign, fold once per source offset, watermark, close).
5. `stream.worker`        the thin Faust shell: `app` (topics, tables, agents), `windowing`
                          (the window agents' step, the idle timer), `index_stage`
                          (the index agent), `sinks`, `logs`, `noise` (rate-limited library
                          logs), `metrics`, `health` and `server` (/metrics, /healthz, /readyz),
                          `transport`, `run` (`run_worker`).
6. `stream.connectors`    `kafka` (kafka-python tools: produce, tail, topics), `jsonl` (event
                          files), `security` (the one translation of the security settings),
                          `probe` (one connection that says why a login fails), `broker` (a local
                          Kafka from Maven Central) and `broker_auth` (its ``--auth scram`` mode),
                          `database` (a local PostgreSQL with pgvector, `signals db`).
7. `stream.similarity`    the vector index of the embeddings: `index` (the contract), `exact` (the
                          reference), `ann` (usearch, the default), `pgvector`, `kinds` (the
                          registry), `signals` (near_duplicate, related, the cluster rule: the
                          `index` agent's step), `records` (its output records), `campaigns`
                          (cluster records, the campaign windows' folder), `rebuild` (from
                          content.embeddings.v1), `calibration`, `cli`.

Tools on the same core: `stream.replay` (`signals replay`; ``--engine spark`` runs the same replay
as a PySpark job, `stream.replay.spark`), `stream.evaluation` (`signals eval`, offline and
``--from-topic``; the regression gate), `stream.bench` (`signals bench`; `stream.bench.engines`
compares the two replay engines), and `stream.cli` (the `signals` command, the demo).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# The public surface: what a user may import from `stream` (pinned by tests/unit/test_public.py).
# Resolved on first use, so `import stream` (and `signals --help`) loads no models or Faust.
_EXPORTS = {
    "Settings": "stream.settings",
    "RawMessage": "stream.core.records", "Position": "stream.core.records",
    "ContentEvent": "stream.core.records",
    "Signal": "stream.core.outputs", "SignalRecord": "stream.core.outputs",
    "EnrichedRecord": "stream.core.outputs", "DeadLetter": "stream.core.outputs",
    "ShadowRecord": "stream.core.outputs", "WindowRecord": "stream.core.outputs",
    "serialise": "stream.core.outputs",
    "Pipeline": "stream.core.pipeline", "BatchOutput": "stream.core.pipeline",
    "process_batch": "stream.core.pipeline", "build_pipeline": "stream.core.builder",
    "Topics": "stream.core.topics", "TopicSpec": "stream.core.topics",
    "TumblingWindow": "stream.windows.kinds", "HoppingWindow": "stream.windows.kinds",
    "WindowAggregator": "stream.windows.aggregator",
    "Rejection": "stream.errors", "RejectReason": "stream.errors",
    "SignalsError": "stream.errors", "ConfigError": "stream.errors",
    "ModelError": "stream.errors", "InputFileError": "stream.errors",
    "BrokerError": "stream.errors",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'stream' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
