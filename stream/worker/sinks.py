"""Where the agents send records: a Faust sink in the worker, a list-backed sink in tests.

The agents depend only on the `Sink` protocol, so tests observe exactly what would be produced
without a broker and without patching anything.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any, Protocol

from stream.core.pipeline import OutRecord


class Sink(Protocol):
    async def send(self, topic: str, record: OutRecord) -> None: ...


class FaustSink:
    """Sends through the app's declared Faust topics (so partitions and serializers are theirs)."""

    def __init__(self, topics: Mapping[str, Any]) -> None:
        self.topics = topics

    async def send(self, topic: str, record: OutRecord) -> None:
        await self.topics[topic].send(key=record.key, value=record.value)


class ListSink:
    """Keeps every record in memory by topic, in send order."""

    def __init__(self) -> None:
        self.records: dict[str, list[OutRecord]] = defaultdict(list)

    async def send(self, topic: str, record: OutRecord) -> None:
        self.records[topic].append(record)
