"""The outside world: Kafka I/O (kafka-python tools), JSONL files and the local Kafka broker."""
