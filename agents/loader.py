"""Loader service: Kafka `interactions` -> ClickHouse `interactions`, bad events -> DLQ,
then one stats batch per partition to the stats agents (agents/batches.py).

A `mode.Service` of the Faust app (started and stopped with `cinerec worker`)
with its own aiokafka consumer in group `{APP_ID}-loader`, NOT a Faust agent:
Faust's per-message path (several asyncio tasks per message) cost ~90% of the
worker's CPU; here the per-message work is only parsing. Per batch
(about LOADER_BATCH_MAX messages, read without a ConsumerRecord each by agents/records.py, or LOADER_BATCH_WITHIN_S):
parse all (a bad message, or any exception from one, is dead-lettered), drop
repeated event_ids, insert the valid ones in one columnar insert (records
ClickHouse refuses as bad data are found by splitting and dead-lettered,
agents/writer.py), publish the dead letters, send the stats batches with each
event's source offset, and only THEN commit the batch's offsets (manual
commits, auto-commit off). Every side effect is retried until it succeeds
(capped backoff), so a committed offset always means stored; an error that
retrying cannot fix stops the worker with one clear log line (`Fatal`).
A stop in the middle of a batch abandons its commit, and a rebalance abandons
the commit of the partitions that moved: the next owner reads them again
(at-least-once); re-inserted rows have the same event_id
and collapse in the ReplacingMergeTree (FINAL readers, app/storage/clickhouse.py).
"""
from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Mapping, NamedTuple, Sequence

import numpy as np
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from mode import Service

from app import telemetry
from app.event_columns import EventColumns
from app.main import app, settings
from app.storage.interactions import first_copies
from app.topics import dlq_topic, film_batches_topic, user_batches_topic
from agents import batches, deadletter
from agents.records import RawFetcher, RawRecords
from agents.retry import KAFKA_PERMANENT, Fatal, kafka_permanent, retry_forever
from agents.writer import ClickHouseWriter

log = logging.getLogger(__name__)
REPORT_EVERY_S = 30.0
REJECTED_BY_CLICKHOUSE = "rejected_by_clickhouse"


class ParsedBatch(NamedTuple):
    """A fetched batch after parsing: what to store, what to dead-letter, what to commit after."""

    columns: EventColumns  # valid events, each event_id once, by partition then offset
    messages: RawRecords  # the message of each event (same order)
    partitions: np.ndarray  # the source partition of each event
    source_offsets: np.ndarray  # the source offset of each event
    rejects: list[deadletter.DeadLetter]
    offsets: dict[TopicPartition, int]  # next offset to read, per partition of the batch
    generation: int  # the consumer's assignment generation when the batch was fetched
    size: int  # messages fetched


def next_offsets(batch: Mapping[TopicPartition, RawRecords]) -> dict[TopicPartition, int]:
    """The offset after the last message of each partition of the batch (what its commit says)."""
    return {tp: int(records.offsets[-1]) + 1 for tp, records in batch.items() if len(records)}


def parse_batch(batch: Mapping[TopicPartition, RawRecords | Sequence[deadletter.RawMessage]],
                generation: int) -> ParsedBatch:
    """Split every partition's messages into valid events and dead letters, and drop repeated
    event_ids (a producer that sent an event twice): the first copy is stored and counted
    in the stats, the others are not (CPU only, no I/O)."""
    batch = {tp: RawRecords.from_messages(messages) for tp, messages in batch.items()}
    parts: list[EventColumns] = []
    kept: list[RawRecords] = []
    rejects: list[deadletter.DeadLetter] = []
    for records in batch.values():
        split = deadletter.split_batch(records)
        parts.append(split.columns)
        kept.append(split.messages)
        rejects += split.rejects
    columns = EventColumns.concat(parts)
    messages = RawRecords.concat(kept)
    first = first_copies(columns.event_id.tolist())
    if first is not None:
        telemetry.DUPLICATES_DROPPED.inc(len(columns) - len(first))
        columns, messages = columns[first], messages.take(first)
    return ParsedBatch(columns, messages, messages.partitions, messages.offsets, rejects, next_offsets(batch),
                       generation, sum(map(len, batch.values())))


def stats_batches(columns: EventColumns, partitions: np.ndarray, offsets: np.ndarray) -> dict[int, batches.StatsBatch]:
    """The events by source partition, each with its source offset (what the stats batches carry)."""
    every = batches.StatsBatch.from_columns(columns, partitions, offsets)
    return {p: every[partitions == p] for p in np.unique(partitions).tolist()}


async def store_batch(parsed: ParsedBatch, writer: ClickHouseWriter, dlq) -> dict[int, batches.StatsBatch]:
    """Insert the valid events and dead-letter the rejects (the parser's and ClickHouse's),
    each retried until done; returns the stored events for the stats batches."""
    telemetry.BATCH_SIZE.observe(parsed.size)
    columns, partitions, offsets, rejects = parsed.columns, parsed.partitions, parsed.source_offsets, list(parsed.rejects)
    refused = await writer.store(columns) if len(columns) else []
    if refused:
        rejects += [deadletter.dead_letter(parsed.messages[i], REJECTED_BY_CLICKHOUSE, why) for i, why in refused]
        keep = np.ones(len(columns), dtype=bool)
        keep[[i for i, _ in refused]] = False
        columns, partitions, offsets = columns[keep], partitions[keep], offsets[keep]
    await deadletter.publish(dlq, rejects)
    if len(columns):
        telemetry.EVENTS_LOADED.inc(len(columns))
        telemetry.INGEST_LAG.set(time.time() - float(columns.ts.max()))
    return stats_batches(columns, partitions, offsets)


async def send_stats(good_by_partition: Mapping[int, batches.StatsBatch], user_topic, film_topic,
                     partitions: int) -> None:
    """Send the batch's stats messages and wait for the broker's acks (retried until done:
    the source offsets are committed right after, so a lost send would be lost stats)."""
    users, films = batches.stats_messages(good_by_partition, partitions)
    if not users and not films:
        return

    async def send_all() -> None:
        futures = [await user_topic.send(value=value, partition=p) for p, value in users]
        futures += [await film_topic.send(value=value, partition=q) for q, value in films]
        await asyncio.gather(*futures)

    try:
        await retry_forever(send_all, f"stats batch send ({len(users)}+{len(films)} messages)", log,
                            permanent=kafka_permanent)
    except KAFKA_PERMANENT as exc:
        largest = max(len(value) for _, value in users + films)
        raise Fatal(f"the broker refuses a stats batch message of {largest} bytes ({exc!r}): check "
                    "max.message.bytes of the stats batch topics") from exc


class LoaderProgress:
    """Whether the loader moves: what `/ready` reports (app/web/health.py `loader_progress`).

    Work = messages fetched and not yet finished, plus messages known to be
    waiting in the assigned partitions (high watermark minus next offset).
    Progress = a batch finished, or a poll that found nothing to do (and
    work arriving after a quiet time starts the count afresh). Stalled =
    work waiting and no progress for `stall_s` (LOADER_STALL_S): a ClickHouse
    or broker outage, or anything else the loader keeps retrying.
    """

    def __init__(self, stall_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_s = stall_s
        self.clock = clock
        self.moved_at = clock()
        self.pending = 0
        self.waiting = 0

    def fetched(self, count: int) -> None:
        if self.pending == 0 and self.waiting == 0:
            self.moved_at = self.clock()  # work starts now: the quiet time counts from here
        self.pending += count

    def finished(self, count: int) -> None:
        self.pending -= count
        self.moved_at = self.clock()

    def idle(self, waiting: int) -> None:
        """A poll returned nothing; `waiting` messages are known to be in the assigned partitions."""
        self.waiting = waiting
        if self.pending == 0 and waiting == 0:
            self.moved_at = self.clock()

    def stall(self) -> str | None:
        """Why the loader is stuck, or None when it is not."""
        work = self.pending + self.waiting
        quiet = self.clock() - self.moved_at
        if work > 0 and quiet > self.stall_s:
            return (f"loader made no progress for {quiet:.0f}s with {work} messages to load "
                    f"(LOADER_STALL_S={self.stall_s:g})")
        return None


def still_assigned(offsets: Mapping[TopicPartition, int], assigned: set[TopicPartition]) -> dict[TopicPartition, int]:
    """The offsets of a batch fetched under an older assignment that may be committed: those of
    the partitions assigned now. A moved partition is re-read by its new owner; a kept one is
    not re-read (the consumer's position stays past the batch), so without its commit the group
    lagged behind until the partition's next event (found by test_multiworker)."""
    return {tp: offset for tp, offset in offsets.items() if tp in assigned}


class _Assignments(ConsumerRebalanceListener):
    """Counts assignments and knows whether one is under way: a batch fetched under an older
    assignment commits only the partitions still assigned (`still_assigned`), and only once the
    new assignment is known (`settled`).

    A commit sent between the revocation and the new assignment carries the old generation: the
    broker refuses it (IllegalGeneration), and aiokafka answers that by rejoining, which started
    one more rebalance of the group, ~3 s each (seen twice in a row when a second worker joined).
    """

    def __init__(self) -> None:
        self.generation = 0
        self.assigned: set[TopicPartition] = set()
        self.settled = asyncio.Event()

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.generation += 1
        self.settled.clear()
        if revoked:
            log.info("loader: partitions revoked %s", sorted(tp.partition for tp in revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.generation += 1
        self.assigned = set(assigned)
        self.settled.set()
        log.info("loader: partitions assigned %s", sorted(tp.partition for tp in assigned))


# The worker's one loader reports here; app/web/worker.py hands it to /ready.
PROGRESS = LoaderProgress(settings.loader_stall_s)


@app.service
class Loader(Service):
    """Consume `interactions` in batches; store, send stats, then commit (see the module doc).

    Pipelined: batch N+2 is fetched while N+1 is parsed (in the parser thread:
    `parse_batch` is pure CPU work) and N is stored (ClickHouse works in its own
    process and the driver in its own thread); N+1 is stored only after N was
    committed, so commits stay in order.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.writer = ClickHouseWriter(settings)
        self.listener = _Assignments()
        self.progress = PROGRESS
        self._next: dict[TopicPartition, int] = {}  # next offset to fetch, per partition seen
        self._parser = ThreadPoolExecutor(max_workers=1, thread_name_prefix="loader-parser")
        timeout_ms = int(max(settings.network_timeout_s * 6, 30.0) * 1000)
        self.consumer = consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap, group_id=settings.loader_group,
            client_id=f"{settings.app_id}-loader", enable_auto_commit=False, auto_offset_reset="earliest",
            request_timeout_ms=timeout_ms,
            # a batch may wait out a ClickHouse outage between two getmany calls: stay in the group
            max_poll_interval_ms=24 * 3600 * 1000,
            # a few batches buffered per fetch round: the broker's round trip overlaps the batch work
            max_partition_fetch_bytes=settings.loader_fetch_bytes,
        )
        self.fetcher = RawFetcher(consumer)

    async def on_start(self) -> None:
        self.consumer.subscribe([self.settings.topic_interactions], listener=self.listener)
        await asyncio.wait_for(self.consumer.start(), self.settings.network_timeout_s * 6)

    async def on_shutdown(self) -> None:
        """After the batch task was cancelled: leave the group without committing anything."""
        await self.consumer.stop()
        self._parser.shutdown(wait=False)

    async def next_batch(self) -> dict[TopicPartition, RawRecords]:
        """About LOADER_BATCH_MAX records (whole partition fetches), waiting at most LOADER_BATCH_WITHIN_S
        for more; read without a ConsumerRecord per message (agents/records.py)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.loader_batch_within_s
        parts: dict[TopicPartition, list[RawRecords]] = {}
        count = 0
        while count < self.settings.loader_batch_max and (remaining := deadline - loop.time()) > 0:
            got = await self.fetcher.getmany(int(remaining * 1000) + 1, self.settings.loader_batch_max - count)
            for tp, records in got.items():
                parts.setdefault(tp, []).append(records)
                count += len(records)
        return {tp: RawRecords.concat(records) for tp, records in parts.items()}

    def waiting(self) -> int:
        """Messages known to be in the assigned partitions beyond what was fetched (no I/O:
        the high watermarks come with the fetch responses)."""
        total = 0
        for tp in self.consumer.assignment():
            highwater, position = self.consumer.highwater(tp), self._next.get(tp)
            if highwater is not None and position is not None:
                total += max(0, highwater - position)
        return total

    @Service.task
    async def _consume(self) -> None:
        """Fetch batch N+1 while N is parsed (in the parser thread) and N-1 stored and committed."""
        parsing: asyncio.Future | None = None  # parse of the last batch fetched
        storing: list[asyncio.Future] = []  # `_store` of the batches parsed or being parsed, oldest first
        loop = asyncio.get_running_loop()
        try:
            while not self.should_stop:
                generation = self.listener.generation
                batch = await self.next_batch()
                while storing and storing[0].done():
                    storing.pop(0).result()  # a Fatal from a batch stops us now, not at the next batch
                if not batch:
                    self.progress.idle(self.waiting())
                    continue
                self.progress.fetched(sum(map(len, batch.values())))
                self._next.update(next_offsets(batch))
                if parsing is not None:
                    await asyncio.wait([parsing])  # one batch parsing at a time (its errors go to its store)
                if len(storing) > 1:
                    await storing[0]  # at most two batches between parsed and committed
                # in a thread of its own: Arrow reads the batch without the GIL, while the loop
                # fetches the next batch, stores the previous one and runs the stats agents
                parsing = loop.run_in_executor(self._parser, parse_batch, batch, generation)
                storing.append(asyncio.ensure_future(self._store(parsing, storing[-1] if storing else None)))
        except Fatal as exc:
            log.error("loader: STOPPING the worker, ingestion cannot go on: %s", exc)
            raise
        finally:
            for future in storing:
                future.cancel()  # a stop never commits a batch that is not stored

    async def _store(self, parsing: asyncio.Future, previous: asyncio.Future | None) -> None:
        """`finish` the batch once parsed and once the one before it is committed (commits in order)."""
        parsed = await parsing
        if previous is not None:
            await previous
        await self.finish(parsed)

    async def finish(self, parsed: ParsedBatch) -> None:
        """Store, send stats, then commit the batch's offsets (unless the assignment changed)."""
        stored = await store_batch(parsed, self.writer, dlq_topic)
        if self.settings.stats_enabled:
            await send_stats(stored, user_batches_topic, film_batches_topic, self.settings.topic_partitions)
        self.progress.finished(parsed.size)
        offsets = parsed.offsets
        if parsed.generation != self.listener.generation:
            try:
                await asyncio.wait_for(self.listener.settled.wait(), self.settings.network_timeout_s * 6)
            except TimeoutError:
                log.warning("loader: no new assignment yet; the batch will be re-delivered")
                return
            offsets = still_assigned(parsed.offsets, self.listener.assigned)
            log.info("loader: assignment changed during the batch; committing its %d partition(s) still assigned, "
                     "not the %d moved (their new owner re-reads them)", len(offsets), len(parsed.offsets) - len(offsets))
            if not offsets:
                return
        try:
            await asyncio.wait_for(self.consumer.commit(offsets), self.settings.network_timeout_s * 6)
        except (KafkaError, TimeoutError) as exc:
            # stored already: the next owner re-reads it (duplicates collapse in ClickHouse)
            log.warning("loader: commit of %d partitions failed (%r); the batch will be re-delivered",
                        len(parsed.offsets), exc)


@app.timer(REPORT_EVERY_S)
async def report_ingestion() -> None:
    """One readable log line with the running totals (the same numbers as /metrics)."""
    dead = telemetry.counter_values(telemetry.EVENTS_DEAD_LETTERED)
    log.info(
        "ingestion: loaded=%d insert_retries=%d dead_letters=%s",
        telemetry.counter_values(telemetry.EVENTS_LOADED).get("", 0),
        telemetry.counter_values(telemetry.INSERT_RETRIES).get("", 0),
        dead or "{}",
    )
