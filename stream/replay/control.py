"""Operator control of a running replay: the rate limit and a clean stop on Ctrl-C / SIGTERM."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from types import FrameType
from typing import TextIO


@dataclass(slots=True)
class TokenBucket:
    """At most `rate` events per second on average, in bursts of at most `burst` events.

    `delay(n, now)` takes `n` tokens at time `now` (seconds, any monotonic clock) and returns how
    long to wait before using them. A batch larger than the bucket is allowed; the debt it leaves
    is paid by waiting, so over any run the events taken by time t are at most burst + rate * t.
    """

    rate: float
    burst: float
    _tokens: float = 0.0
    _last: float | None = None

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst <= 0:
            raise ValueError("rate and burst must be > 0")
        self._tokens = self.burst

    @classmethod
    def per_second(cls, rate: float) -> TokenBucket:
        return cls(rate=rate, burst=max(rate, 1.0))

    def delay(self, n: int, now: float) -> float:
        if self._last is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= n
        return max(0.0, -self._tokens / self.rate)


class StopRequest:
    """First signal: stop after the current batch. Second: abandon it (KeyboardInterrupt)."""

    def __init__(self, err: TextIO) -> None:
        self.err = err
        self.signum: int | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.signum = signum
        print("\nstopping after this batch (again to abandon it)", file=self.err, flush=True)

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def wait_unless_stopped(seconds: float, stop: StopRequest) -> bool:
    """Sleep for the rate limit in short steps; False when a stop was requested meanwhile."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if stop.requested:
            return False
        time.sleep(min(left, 0.1))
    return True
