"""Faust's aiokafka transport with the changes the worker's guarantees need.

* **Idempotent producer** (``enable.idempotence``, ``acks=all``): a retried batch is written once
  and batches stay in order even when a retry follows a failure. Faust turns it on only with
  ``processing_guarantee="exactly_once"``, which we do not use (README "Windows").
* **A producer buffer whose flush drains it.** Table writes (the window state's changelog) go
  through Faust's `ProducerBuffer`; Faust flushes it before it commits offsets, but its flush
  returns after 0.1 s without a send, and while the last message taken from the queue is still on
  its way into the client. An offset of ``content.enriched.v1`` could then be committed before
  the window state that folded it was on the broker: after a crash the restored table lacks
  the fold and the record is not read again (a window short).
  `DrainingBuffer.flush` returns only when the queue is empty and nothing is in flight.
* **"Seek back to committed" also where nothing was committed yet.** Faust stops the flow around
  a rebalance and table recovery and then seeks every partition back to its committed offset, so
  that records fetched but not yet delivered are fetched again. aiokafka's ``seek_to_committed``
  skips a partition without a commit (or committed at 0), whose position then stays past the
  dropped records, which were then never delivered. `WorkerConsumer.seek_to_committed` seeks
  those partitions to their beginning, which is what ``auto_offset_reset=earliest`` means for a
  partition without a commit.
* **Fetched records are never dropped on the floor.** Faust's `Consumer.getmany` stops handing
  out a fetched batch when the consumer generation changes or the flow stops (a rebalance, the
  start of a worker), and skips the records of partitions it does not count as active; aiokafka's
  position is already past them, and Faust relies on a later seek to committed offsets to fetch
  them again, which does not come when that seek ran first (seen in a crash run: a restarted
  worker delivered offsets 0..11, then 99.., of every partition, with nothing committed).
  `WorkerConsumer.getmany` seeks each partition with undelivered records back to the first of
  them.
* **Records fetched before a seek are not delivered after it.** After a rebalance Faust resumes
  the partitions and only then seeks them to their committed offsets
  (`Recovery._resume_streams`); a fetch that returned in between holds records from the old
  position (past the records dropped at the revocation). Delivered after the seek, they moved
  Faust's read offset past the records the seek fetches again, which it then dropped as already
  read, and it committed over the jump as a gap (the scale-out test lost offsets 50..53 of a
  partition sought to 48 whose first record delivered was 54). `WorkerConsumer.getmany` hands
  out only records below the client's position, checked as each is handed out: the others will
  be fetched again (`stale_fetch_dropped`); and it re-fetches undelivered records (above) only
  where the position is still past them, so it never undoes such a seek.
* **No hole in what an input partition delivers.** Faust commits past a jump in offsets as a
  gap (see "Offset gaps reported" below for why a jump on an input topic is a record fetched
  and not delivered). After a seek to the committed offsets Faust resets its read offset, and
  a record of a fetch made before that seek can still pass (a restart test delivered offsets
  16..21, then 23 after a seek to 16, and committed over 22). `WorkerConsumer.getmany` knows
  the next offset each input partition must deliver (`NextOffsets`: the last delivered + 1,
  or where a seek put it); a record past it is held back and the partition sought to the
  missing offset (``gap_refetched``): duplicates at worst, never a loss. A jump that comes back
  `NextOffsets.ACCEPT_AFTER` times in a row is real (retention deleted the records) and passes.
  The drain loop's own jump check (its read offset to the record it took) is the last line:
  on an input partition `_add_gap` does not hand Faust a gap to commit over unless the guard
  let that jump through; it seeks the partition back to the read offset, which makes the
  callback drop the record (``gap_refetched`` with ``by="drain_loop"``). A scale-out run lost
  8 offsets of a partition there: a second seek to the committed offsets (Faust seeks again
  from `getmany` when the flow is not active), after which the first record delivered was 53
  with a read offset of 40, and the guard let it pass (so its next offset was past 53, as
  after the 54 admitted before that seek); which path kept the guard past the seek is not
  known, and this check does not depend on it.
* **A record held across a seek is not delivered.** Faust's drain loop takes a record from
  `getmany`, then yields to the event loop (every 100 records, to commit, in the callback while
  the flow is stopped) before it compares the record with its read offset and delivers it, and
  records it as read afterwards, also when a stopped flow cancelled the delivery. A seek back
  that completed in between made the record look like a jump (a gap Faust commits over: a
  scale-out run logged ``offset_gap`` 17..19 with no hole fetched), or left the read offset past
  the records the seek fetches again, which were then dropped as already read. The consumer's
  callback drops such a record (``held_record_dropped``, `sought_back_over`), its ``_add_gap``
  ignores the "gap" (``offset_gap_race_ignored``), and the drain loop's read offset does not
  take that record, or one sought back over during its delivery (`ReadOffsets`): the
  partition is delivered again, in order, from where the seek put it. (Lowering the read
  offset to any admitted record below it instead let stale records of an earlier assignment
  through, and a scale-out run lost 15 offsets.)
* **A record whose delivery was cancelled is fetched again.** The drain loop gives up on a
  delivery when the flow stops (it cancels the callback) and still records the record as
  read; the record may never have reached its stream. `_fetch_again_from` seeks the
  partition back to it (``cancelled_delivery_refetched``), so nothing after it goes first.
* **A bounded stop.** `BoundedStopConsumerThread` gives the consumer thread 15 s to close
  instead of mode's 60 s (with the broker gone a SIGTERM'd worker took ~63 s to exit).
* **Offset gaps reported.** Faust's consumer treats a jump in a partition's offsets as a gap
  (compaction, transaction markers) and commits past it. Our input topics are not compacted and
  not transactional, so a jump there means records were fetched and not delivered; the consumer
  logs ``offset_gap`` (topic, partition, range), so an operator sees what Faust would otherwise
  skip silently. The compacted topics (``content.embeddings.v1``) have gaps by design: not
  logged.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal

import structlog
from faust.transport.consumer import RecordMap
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.transport.producer import ProducerBuffer
from faust.types import TP, Message

from stream.worker.offsets import NextOffsets, ReadOffsets, fetched_again, sought_back_over

log = structlog.get_logger("stream.worker.transport")


class DrainingBuffer(ProducerBuffer):
    """Faust's producer buffer, but `flush` waits until every message reached the client."""

    in_flight = 0

    async def _send_pending(self, fut: Any) -> None:
        self.in_flight += 1     # before the first await: the message left the queue just now
        try:
            await super()._send_pending(fut)
        finally:
            self.in_flight -= 1

    async def flush(self) -> None:
        while self.size or self.in_flight:
            await self.flush_atmost(None)   # returns after 0.1 s without progress: go round
            if self.in_flight and not self.size:
                await asyncio.sleep(0.001)


class IdempotentProducer(faust_aiokafka.Producer):
    """The aiokafka producer, idempotent, with a `DrainingBuffer`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        buffer = DrainingBuffer(loop=self.loop, beacon=self.beacon)
        buffer.app = self.app
        buffer.threaded_producer = self.threaded_producer
        self.buffer = buffer

    def _settings_extra(self) -> Mapping[str, Any]:
        extra: Mapping[str, Any] = super()._settings_extra()
        return {**extra, "acks": "all", "enable_idempotence": True}


class BoundedStopConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread, given 15 s to stop (`shutdown_timeout`) instead of mode's 60 s.
    With the broker gone aiokafka's consumer takes the whole minute to close (a SIGTERM'd
    worker then exited after ~63 s, past Kubernetes' default grace period); offsets are
    committed before the thread stops, so cutting its close short loses nothing."""

    shutdown_timeout = 15.0


class WorkerConsumer(faust_aiokafka.Consumer):
    """Faust's consumer; re-fetches what it fetched and did not deliver, seeks uncommitted
    partitions to their beginning, logs offset gaps."""

    _fetched: RecordMap | None = None
    _sought: frozenset[TP] = frozenset()   # partitions whose first record after a seek is logged
    _expected: NextOffsets | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_offset: ReadOffsets = ReadOffsets(self._read_offset)
        self._conductor_callback = self.callback
        self.callback = self._deliver

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return BoundedStopConsumerThread(self, loop=self.loop, beacon=self.beacon)

    @property
    def expected(self) -> NextOffsets:
        if self._expected is None:
            self._expected = NextOffsets()
        return self._expected

    def _compacted(self, tp: TP) -> bool:
        return tp.topic in getattr(self.transport, "compacted", frozenset())

    def _guarded(self, tp: TP) -> bool:
        """Input partitions: the ones that may have no hole (not compacted, not a changelog)."""
        return not (self._compacted(tp) or self._is_changelog_tp(tp))

    async def _wait_next_records(self, timeout: float) -> tuple[RecordMap | None, Any]:
        records, active = await super()._wait_next_records(timeout)
        self._fetched = records
        return records, active

    def _position(self, tp: TP) -> int | Literal[False] | None:
        """The client's next fetch offset of `tp`; None while a reset is pending (a seek to
        the beginning); False when it does not have `tp` (or is not started)."""
        try:
            assignment = self._thread._ensure_consumer()._subscription.subscription.assignment
            state = assignment.state_value(tp) if assignment is not None else None
        except Exception:   # not started, or unsubscribed meanwhile: nothing to compare with
            return False
        if state is None:
            return False
        return int(state.position) if state.has_valid_position else None

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Message]]:
        self._fetched = None
        delivered: dict[TP, int] = {}
        stale: dict[TP, list[int]] = {}
        holes: dict[TP, tuple[int, int]] = {}   # the offset sought back to, the record held
        async for tp, message in super().getmany(timeout):
            if fetched_again(message.offset, self._position(tp)):
                stale.setdefault(tp, []).append(message.offset)
                continue
            if tp in holes:
                continue
            if self._guarded(tp):
                missing = self.expected.admit(tp, message.offset)
                if missing is not None:
                    holes[tp] = (missing, message.offset)
                    continue
            delivered[tp] = message.offset
            if tp in self._sought:
                self._sought -= {tp}
                log.info("first_after_seek", topic=tp.topic, partition=tp.partition,
                         offset=message.offset)
            yield tp, message
        for tp, offsets in stale.items():
            log.info("stale_fetch_dropped", topic=tp.topic, partition=tp.partition,
                     first=offsets[0], last=offsets[-1], count=len(offsets))
        for tp, (missing, held) in holes.items():
            log.warning("gap_refetched", topic=tp.topic, partition=tp.partition,
                        missing=missing, held=held)
            await self.seek(tp, missing)
        await self._refetch_undelivered(self._fetched or {}, delivered)

    async def _refetch_undelivered(self, fetched: RecordMap, delivered: Mapping[TP, int]) -> None:
        assigned = self.assignment()
        for tp, records in fetched.items():
            last = delivered.get(tp)
            left = [r.offset for r in records if last is None or r.offset > last]
            # not where a seek already moved the position back to them (or before)
            if left and tp in assigned and not fetched_again(left[0], self._position(tp)):
                log.info("refetching_undelivered", topic=tp.topic, partition=tp.partition,
                         first=left[0], last=left[-1])
                await self.seek(tp, left[0])

    async def _seek(self, partition: TP, offset: int) -> None:
        self.expected.sought(partition, offset)
        await super()._seek(partition, offset)

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        for tp in revoked:
            self.expected.forget(tp)
            self._read_offset.forget(tp)
        await super().on_partitions_revoked(revoked)

    async def perform_seek(self) -> None:
        """Faust's seek to the committed offsets after a rebalance; logged with the offsets the
        input partitions restart from, and the first record each then delivers."""
        flow_active = self.flow_active   # False: Faust's getmany seeks (the flow stopped)
        await super().perform_seek()
        inputs = {tp: offset for tp, offset in self._read_offset.items()
                  if not self._is_changelog_tp(tp)}
        log.info("sought_to_committed", offsets={f"{tp.topic}:{tp.partition}": offset
                                                 for tp, offset in sorted(inputs.items())},
                 flow_active=flow_active)
        self._sought = frozenset(inputs)

    async def seek_to_committed(self) -> Mapping[TP, int]:
        """aiokafka's seek to the committed offsets, and to the beginning where there is none;
        the guard learns where each partition now starts only after the last await: the drain
        loop runs during them, and what it admits then is delivered again from the commit
        (Faust resets its read offsets right after). Set before the seek to the beginning, a
        restart's guard counted 16..24, delivered meanwhile, as done, while 24 never reached
        the agent: 25 came next and 24 was lost."""
        committed: Mapping[TP, int] = await super().seek_to_committed()
        if self.app.conf.consumer_auto_offset_reset == "earliest":
            uncommitted = [tp for tp, offset in committed.items() if not offset]
            if uncommitted:
                await self._thread.seek_to_beginning(*uncommitted)
        for tp, offset in committed.items():
            self.expected.sought(tp, offset or None)
        return committed

    def _sought_back_over(self, tp: TP, offset: int) -> bool:
        """Whether a seek since the guard admitted the record at `offset` of input partition
        `tp` moved it back to that record or before (it will be delivered again, in order)."""
        return self._guarded(tp) and sought_back_over(offset, self.expected.next.get(tp),
                                                      self._position(tp))

    async def _deliver(self, message: Message) -> None:
        """The drain loop's callback (the conductor's): not for a record a seek made stale
        while the loop held it (it yields to the event loop, commits, before the callback);
        a record that a seek went back over while it was being delivered is not taken as read;
        one whose delivery was cancelled is fetched again (`_fetch_again_from`)."""
        tp, offset = message.tp, message.offset
        if self._sought_back_over(tp, offset):
            log.info("held_record_dropped", topic=tp.topic, partition=tp.partition,
                     offset=offset)
            self._read_offset.unread(tp, offset)
            return
        delivered = False
        try:
            await self._conductor_callback(message)
            delivered = True
        finally:
            if self._sought_back_over(tp, offset):
                log.info("sought_back_during_delivery", topic=tp.topic, partition=tp.partition,
                         offset=offset)
                self._read_offset.unread(tp, offset)
            elif not delivered and not self._is_changelog_tp(tp):
                self._fetch_again_from(tp, offset)

    def _fetch_again_from(self, tp: TP, offset: int) -> None:
        """The delivery of the record at `offset` was cancelled (the drain loop gives up on
        the callback when the flow stops), so it may never have reached its stream: fetch
        `tp` again from it, before anything after it, and do not take it as read. (A
        scale-out run's enrich stage processed 56..59 of a partition before 48..55, which the
        drain loop had taken as read without their reaching the agent, and no gap or seek was
        logged in between; the window stage, which needs each source's records in order,
        skipped 48..55 as repeats. A cancelled delivery is one way to lose records there.)
        Synchronous: it runs while the cancellation unwinds."""
        log.info("cancelled_delivery_refetched", topic=tp.topic, partition=tp.partition,
                 offset=offset)
        self.expected.sought(tp, offset)
        self._read_offset.unread(tp, offset)
        try:
            self._thread.seek(tp, offset)
        except Exception:   # revoked or stopping meanwhile: the next owner starts at the commit
            log.info("cancelled_delivery_not_sought", topic=tp.topic, partition=tp.partition)

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        if self._sought_back_over(tp, offset_to):
            log.warning("offset_gap_race_ignored", topic=tp.topic, partition=tp.partition,
                        first=offset_from, last=offset_to)
            return
        again = self.expected.hole(tp, offset_from - 1, offset_to) if self._guarded(tp) \
            else None
        if again is not None:   # the seek makes the callback drop the record (stale)
            log.warning("gap_refetched", topic=tp.topic, partition=tp.partition,
                        missing=offset_from, held=offset_to, by="drain_loop")
            await self.seek(tp, again)
            return
        if not self._compacted(tp):
            log.warning("offset_gap", topic=tp.topic, partition=tp.partition,
                        first=offset_from, last=offset_to)
        await super()._add_gap(tp, offset_from, offset_to)


class WorkerTransport(faust_aiokafka.Transport):
    """The transport of `stream.worker.app`; `compacted` names the topics with gaps by design."""

    Producer = IdempotentProducer
    Consumer = WorkerConsumer
    compacted: frozenset[str] = frozenset()
