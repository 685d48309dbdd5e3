"""content-signals: Kafka content events → ONNX model signals and windowed aggregates.

Reading guide, in the order data flows:

1. `stream.settings`   the one frozen `Settings` (``SIGNALS_*`` environment, CLI flags).
2. `stream.records`    plain records: `RawMessage` in, `ContentEvent` after validation.
3. `stream.validate`   bytes → `ContentEvent` or `Rejection` (errors as data; `stream.errors`).
4. `stream.batching`   micro-batches and length buckets.
5. `stream.encoder`    tokenizer + ONNX sentence encoder, on `stream.onnx_session.OnnxModel`
                       (sha256-verified files listed in `stream.manifest`).
6. `stream.enrich`     every model of the suite over one batch → `Enrichment` per event.
7. `stream.pipeline`   `process_batch`: validate → enrich → signal / enriched / dead-letter records.
                       The worker, replay, eval and bench all call this one function.
8. `stream.rules`      flags and the aggregation group derived from signals.
9. `stream.windows`    event-time tumbling/hopping windows: assign, fold, close.
10. `stream.app`       the thin Faust shell: topics, the window table, the two agents.

Models: `stream.models` (language model, heads on the embedding, probabilities → signals),
`stream.langid_features` (the language model's featuriser), `stream.model_eval` (champion vs
challenger windows, PSI).

Tools on the same core: `stream.replay*` (`signals replay`: plan, sources, sinks, state,
control), `stream.evaluate` / `stream.metrics` / `stream.eval_*` (`signals eval`, offline and
`--from-topic`), `stream.bench` (`signals bench`: the same path measured, JSON out).

Around them: `stream.cli` / `stream.commands` (the `signals` command), `stream.worker`,
`stream.kafka_io` (kafka-python tools), `stream.broker` (a local Kafka from Maven Central),
`stream.sinks`, `stream.demo`, `stream.logs` (structlog).
"""

__version__ = "0.1.0"
