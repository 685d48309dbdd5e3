"""Window kinds: one class each, all answering the same three questions.

A kind says which windows an event time falls into (`starts`), where a window ends (`end`) and
what it is called (`name`, the ``window.name`` field of ``signals.windows.v1``). The aggregator
(`stream.windows.aggregator`) and the worker only ever talk to a `WindowKind`, so a new kind is a
class here plus its entry in `window_kinds` (and its settings) — nothing in the worker changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

from stream.settings import Settings


class WindowKind(Protocol):
    kind: ClassVar[str]

    @property
    def name(self) -> str: ...

    def starts(self, ts_ms: int) -> list[int]:
        """Start of every window of this kind that contains `ts_ms`, oldest first."""
        ...

    def end(self, start_ms: int) -> int:
        """The (exclusive) end of the window that starts at `start_ms`."""
        ...


@dataclass(frozen=True, slots=True)
class TumblingWindow:
    """Back-to-back windows of `size_ms`: each event lands in exactly one."""

    size_ms: int
    kind: ClassVar[str] = "tumbling"

    def __post_init__(self) -> None:
        if self.size_ms <= 0:
            raise ValueError(f"tumbling window size {self.size_ms} must be positive")

    @property
    def name(self) -> str:
        return f"tumbling_{self.size_ms // 1000}s"

    def starts(self, ts_ms: int) -> list[int]:
        return [(ts_ms // self.size_ms) * self.size_ms]

    def end(self, start_ms: int) -> int:
        return start_ms + self.size_ms


@dataclass(frozen=True, slots=True)
class HoppingWindow:
    """Windows of `size_ms` starting every `step_ms`: each event lands in ``size / step``."""

    size_ms: int
    step_ms: int
    kind: ClassVar[str] = "hopping"

    def __post_init__(self) -> None:
        if self.size_ms <= 0 or self.step_ms <= 0 or self.size_ms % self.step_ms:
            raise ValueError(f"window size {self.size_ms} must be a positive multiple of "
                             f"step {self.step_ms}")

    @property
    def name(self) -> str:
        return f"hopping_{self.size_ms // 1000}s_{self.step_ms // 1000}s"

    def starts(self, ts_ms: int) -> list[int]:
        last = (ts_ms // self.step_ms) * self.step_ms
        first = last - self.size_ms + self.step_ms
        return list(range(first, last + 1, self.step_ms))

    def end(self, start_ms: int) -> int:
        return start_ms + self.size_ms


def window_kinds(settings: Settings) -> tuple[WindowKind, ...]:
    """The windows the worker and replay aggregate signals into (SIGNALS_*_WINDOW_S settings)."""
    return (TumblingWindow(settings.tumbling_window_s * 1000),
            HoppingWindow(settings.hopping_window_s * 1000, settings.hopping_step_s * 1000))
