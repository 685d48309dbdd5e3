"""Less noise during an outage: Kafka client libraries log each failed attempt, about a hundred
lines a second while a broker is down, and Faust warns "producer buffer full" per send on a
backlog.

`RepeatFilter` lets the first record of each kind through, drops the repeats, and every
`interval_s` lets one through again with the count of what it dropped in between. A kind is the
logger, the level and the message template with its numbers blanked out (ports, sizes, backoff
times differ from line to line). Only the named library loggers are limited; our own records
(dead letters, batches) always pass.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

LIBRARY_LOGGERS = ("kafka", "aiokafka", "faust", "mode")
_NUMBERS = re.compile(r"\d+(\.\d+)?")


@dataclass(slots=True)
class _Kind:
    window_start: float
    dropped: int = 0


class RepeatFilter(logging.Filter):
    """A handler filter: the first of each kind, then one summary line per kind per interval."""

    def __init__(self, interval_s: float = 10.0, loggers: Iterable[str] = LIBRARY_LOGGERS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval_s = interval_s
        self.loggers = tuple(loggers)
        self.clock = clock
        self._kinds: dict[tuple[str, int, str], _Kind] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._limited(record.name):
            return True
        key = (record.name, record.levelno, _NUMBERS.sub("#", str(record.msg)))
        now = self.clock()
        kind = self._kinds.get(key)
        if kind is None:
            self._kinds[key] = _Kind(now)
            return True
        if now - kind.window_start < self.interval_s:
            kind.dropped += 1
            return False
        if kind.dropped:
            record.msg = (f"{record.getMessage()} [and {kind.dropped} more like it in the last "
                          f"{now - kind.window_start:.0f} s]")
            record.args = None
        self._kinds[key] = _Kind(now)
        return True

    def _limited(self, name: str) -> bool:
        return any(name == prefix or name.startswith(prefix + ".") for prefix in self.loggers)
