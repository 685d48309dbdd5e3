"""The pure core: records, validation, micro-batches, enrichment, signal rules and
`process_batch`.

No Kafka and no Faust in here: the worker, replay, eval and bench all call `stream.core.pipeline`.
"""
