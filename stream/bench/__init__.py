"""`signals bench`: the same `process_batch` measured (throughput, latency, stages,
memory), written as JSON."""
