"""The repeat filter: the first of each kind passes, repeats are counted, a summary per interval."""

from __future__ import annotations

import logging

import pytest

from stream.worker.noise import RepeatFilter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def record(name: str, msg: str, *args: object, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args or None, None)


def passed(filter_: RepeatFilter, records: list[logging.LogRecord]) -> list[str]:
    return [r.getMessage() for r in records if filter_.filter(r)]


def test_an_outage_is_one_line_per_kind_then_one_summary_per_interval() -> None:
    clock = Clock()
    limit = RepeatFilter(interval_s=10, clock=clock)
    first = [record("kafka.net.connection", "Connection to %s:%d lost", "127.0.0.1", 9000 + i)
             for i in range(100)]
    first.append(record("aiokafka.conn", "Unable connect to node 1"))
    assert passed(limit, first) == ["Connection to 127.0.0.1:9000 lost",
                                    "Unable connect to node 1"]
    clock.now = 10.5
    later = [record("kafka.net.connection", "Connection to %s:%d lost", "127.0.0.1", 9500)]
    assert passed(limit, later) == [
        "Connection to 127.0.0.1:9500 lost [and 99 more like it in the last 10 s]"]


def test_f_string_warnings_with_numbers_are_one_kind() -> None:
    """Faust's "producer buffer full size N" is formatted before logging: numbers are blanked."""
    limit = RepeatFilter(interval_s=10, clock=Clock())
    records = [record("faust.transport.producer", f"producer buffer full size {n}",
                      level=logging.WARNING) for n in range(1000, 1300)]
    assert passed(limit, records) == ["producer buffer full size 1000"]


@pytest.mark.parametrize("name", ["stream.batches", "kafkaesque", "root"])
def test_our_own_records_and_other_loggers_always_pass(name: str) -> None:
    limit = RepeatFilter(interval_s=10, clock=Clock())
    records = [record(name, "dead_letter") for _ in range(5)]
    assert len(passed(limit, records)) == 5


def test_levels_are_separate_kinds() -> None:
    limit = RepeatFilter(interval_s=10, clock=Clock())
    records = [record("kafka", "x", level=logging.WARNING), record("kafka", "x"),
               record("kafka", "x")]
    assert len(passed(limit, records)) == 2


def test_the_worker_logging_config_puts_the_filter_on_stderr(capsys: pytest.CaptureFixture[str],
                                                             ) -> None:
    from stream.settings import Settings
    from stream.worker.logs import configure_logging

    configure_logging(Settings().replace(log_format="console"))
    for port in range(50):
        logging.getLogger("aiokafka.conn").error("Unable to connect to 127.0.0.1:%d", port)
    err = capsys.readouterr().err
    assert err.count("Unable to connect") == 1
