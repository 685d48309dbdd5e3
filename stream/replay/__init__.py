"""`signals replay`: reprocess history (a topic range or a file) through `process_batch` with chosen
model versions; plan, sources, sinks, resumable state and control."""
