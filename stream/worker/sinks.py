"""Where the agents send records: a Faust sink in the worker, a list-backed sink in tests.

The agents hand typed records (`stream.core.outputs`) to a `Sink`; the sink serialises them. Tests
use `ListSink`, which keeps the serialised bytes, so they observe exactly what would be produced
without a broker and without patching anything.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any, Protocol

from stream.core.outputs import OutRecord, Record, serialise


class Sink(Protocol):
    async def send(self, topic: str, record: Record) -> None: ...


class FaustSink:
    """Sends through the app's declared Faust topics (so partitions and serializers are theirs)."""

    def __init__(self, topics: Mapping[str, Any]) -> None:
        self.topics = topics

    async def send(self, topic: str, record: Record) -> None:
        out = serialise(record)
        await self.topics[topic].send(key=out.key, value=out.value)


class ListSink:
    """Keeps every record in memory by topic, in send order."""

    def __init__(self) -> None:
        self.records: dict[str, list[OutRecord]] = defaultdict(list)

    async def send(self, topic: str, record: Record) -> None:
        self.records[topic].append(serialise(record))
