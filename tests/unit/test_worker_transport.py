"""The worker's transport: the producer buffer behind table writes (Faust flushes it before
committing offsets, so its flush must not return while a message is still on its way to the
client). The consumer's offset rules are in test_worker_offsets.py."""

from __future__ import annotations

import asyncio
import contextlib
from types import SimpleNamespace
from typing import Any

import faust
from faust.transport.producer import ProducerBuffer

from stream.worker.transport import DrainingBuffer


class SlowChannel:
    """A channel whose client takes `delay` seconds to accept each message (a metadata fetch,
    a full accumulator)."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.accepted: list[int] = []

    async def publish_message(self, fut: Any, wait: bool = False) -> None:
        await asyncio.sleep(self.delay)
        self.accepted.append(fut.n)


async def flushed_after(buffer: ProducerBuffer, messages: int, delay: float) -> int:
    """Put `messages` into a running `buffer`, flush it, and count what the client had by then."""
    buffer.app = faust.App("transport-test", autodiscover=False)
    channel = SlowChannel(delay)
    await buffer.start()
    try:
        for n in range(messages):
            buffer.put(SimpleNamespace(n=n, message=SimpleNamespace(channel=channel)))
        await buffer.flush()
        return len(channel.accepted)
    finally:
        with contextlib.suppress(RuntimeError):   # Faust's: "cannot flush" what it left behind
            await buffer.stop()


def test_faust_buffer_flush_returns_before_a_slow_message_is_sent() -> None:
    # Faust's own flush gives up after 0.1 s without a send: the reason for DrainingBuffer. If
    # this starts failing, Faust fixed it and the override can go.
    assert asyncio.run(flushed_after(ProducerBuffer(), 3, 0.25)) < 3


def test_draining_buffer_flush_waits_for_every_message() -> None:
    assert asyncio.run(flushed_after(DrainingBuffer(), 3, 0.25)) == 3


def test_draining_buffer_flush_waits_for_the_last_message_in_flight() -> None:
    # One message, taken off the queue at once: the queue is empty while it is being sent.
    assert asyncio.run(flushed_after(DrainingBuffer(), 1, 0.05)) == 1
