"""Loader service: Kafka `interactions` -> ClickHouse `interactions`, bad events -> DLQ,
then one stats batch per partition to the stats agents (agents/batches.py).

A `mode.Service` of the Faust app (started and stopped with `cinerec worker`)
with its own aiokafka consumer in group `{APP_ID}-loader`, NOT a Faust agent:
Faust's per-message path (several asyncio tasks per message) cost ~90% of the
worker's CPU; here the per-message work is only parsing. Per batch
(`getmany`, up to LOADER_BATCH_MAX messages or LOADER_BATCH_WITHIN_S):
parse all, publish the rejects to the DLQ, insert the valid ones in one
columnar insert, send the stats batches, and only THEN commit the batch's
offsets (manual commits, auto-commit off). Every side effect is retried until
it succeeds (capped backoff), so a committed offset always means stored.
A stop or a rebalance in the middle of a batch abandons its commit: the next
owner reads it again (at-least-once); re-inserted rows have the same event_id
and collapse in the ReplacingMergeTree (FINAL readers, app/storage/clickhouse.py).
"""
from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Mapping, NamedTuple, Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from clickhouse_driver import Client
from mode import Service

from app import telemetry
from app.events import Event
from app.main import app, settings
from app.settings import Settings
from app.storage.clickhouse import client as clickhouse_client
from app.storage.interactions import insert_events
from app.topics import dlq_topic, film_batches_topic, user_batches_topic
from agents import batches, deadletter
from agents.retry import retry_forever

log = logging.getLogger(__name__)
REPORT_EVERY_S = 30.0


class ClickHouseWriter:
    """Runs the blocking driver in one thread of its own, with its own connection.

    One thread keeps the (not thread-safe) client single-user and keeps the
    event loop free while ClickHouse works; a failed connection is dropped
    and re-opened on the next attempt.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="clickhouse-writer")
        self._conn: Client | None = None

    def _insert_blocking(self, events: Sequence[Event]) -> int:
        if self._conn is None:
            self._conn = clickhouse_client(self.settings)
        try:
            return insert_events(self._conn, events)
        except Exception:
            self._conn.disconnect()
            self._conn = None
            raise

    async def insert(self, events: Sequence[Event]) -> int:
        """Insert once (may raise); see `store` for the retrying form."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._insert_blocking, events)

    async def store(self, events: Sequence[Event]) -> int:
        """Insert, retrying with capped backoff until ClickHouse accepts the batch."""
        started = time.perf_counter()
        rows = await retry_forever(
            lambda: self.insert(events),
            f"ClickHouse insert of {len(events)} events",
            log,
            on_retry=telemetry.INSERT_RETRIES.inc,
        )
        telemetry.INSERT_SECONDS.observe(time.perf_counter() - started)
        return rows


class ParsedBatch(NamedTuple):
    """A fetched batch after parsing: what to store, what to dead-letter, what to commit after."""

    good: dict[int, list[Event]]  # valid events by source partition (what the stats batches carry)
    rejects: list[deadletter.DeadLetter]
    offsets: dict[TopicPartition, int]  # next offset to read, per partition of the batch
    generation: int  # the consumer's assignment generation when the batch was fetched


def parse_batch(batch: Mapping[TopicPartition, Sequence[deadletter.RawMessage]], generation: int) -> ParsedBatch:
    """Split every partition's messages into valid events and dead letters (CPU only, no I/O)."""
    good: dict[int, list[Event]] = {}
    rejects: list[deadletter.DeadLetter] = []
    for tp, messages in batch.items():
        good[tp.partition], bad = deadletter.split_batch(messages)
        rejects.extend(bad)
    offsets = {tp: messages[-1].offset + 1 for tp, messages in batch.items() if messages}
    return ParsedBatch(good, rejects, offsets, generation)


async def store_batch(parsed: ParsedBatch, writer: ClickHouseWriter, dlq) -> None:
    """Dead-letter the rejects and insert the valid events, each retried until done."""
    telemetry.BATCH_SIZE.observe(sum(map(len, parsed.good.values())) + len(parsed.rejects))
    await deadletter.publish(dlq, parsed.rejects)
    events = [event for partition_events in parsed.good.values() for event in partition_events]
    if events:
        await writer.store(events)
        telemetry.EVENTS_LOADED.inc(len(events))
        telemetry.INGEST_LAG.set(time.time() - max(event.ts for event in events))


async def send_stats(good_by_partition: Mapping[int, Sequence[Event]], user_topic, film_topic,
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

    await retry_forever(send_all, f"stats batch send ({len(users)}+{len(films)} messages)", log)


class _Assignments(ConsumerRebalanceListener):
    """Counts assignments: a batch fetched under an older one is not committed (its
    partitions may have moved; the new owner reads it again)."""

    def __init__(self) -> None:
        self.generation = 0

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.generation += 1
        if revoked:
            log.info("loader: partitions revoked %s", sorted(tp.partition for tp in revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.generation += 1
        log.info("loader: partitions assigned %s", sorted(tp.partition for tp in assigned))


@app.service
class Loader(Service):
    """Consume `interactions` in batches; store, send stats, then commit (see the module doc).

    Pipelined one deep: while batch N is being stored (ClickHouse works in its
    own process and the driver in its own thread), batch N+1 is fetched and
    parsed; N+1 is stored only after N was committed, so commits stay in order.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.writer = ClickHouseWriter(settings)
        self.listener = _Assignments()
        timeout_ms = int(max(settings.network_timeout_s * 6, 30.0) * 1000)
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap, group_id=settings.loader_group,
            client_id=f"{settings.app_id}-loader", enable_auto_commit=False, auto_offset_reset="earliest",
            request_timeout_ms=timeout_ms,
            # a batch may wait out a ClickHouse outage between two getmany calls: stay in the group
            max_poll_interval_ms=24 * 3600 * 1000,
        )

    async def on_start(self) -> None:
        self.consumer.subscribe([self.settings.topic_interactions], listener=self.listener)
        await asyncio.wait_for(self.consumer.start(), self.settings.network_timeout_s * 6)

    async def on_shutdown(self) -> None:
        """After the batch task was cancelled: leave the group without committing anything."""
        await self.consumer.stop()

    async def next_batch(self) -> dict[TopicPartition, list]:
        """Up to LOADER_BATCH_MAX records, waiting at most LOADER_BATCH_WITHIN_S for more."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.loader_batch_within_s
        batch: dict[TopicPartition, list] = {}
        count = 0
        while count < self.settings.loader_batch_max and (remaining := deadline - loop.time()) > 0:
            got = await self.consumer.getmany(timeout_ms=int(remaining * 1000) + 1,
                                              max_records=self.settings.loader_batch_max - count)
            for tp, records in got.items():
                batch.setdefault(tp, []).extend(records)
                count += len(records)
        return batch

    @Service.task
    async def _consume(self) -> None:
        in_flight: asyncio.Future | None = None
        try:
            while not self.should_stop:
                generation = self.listener.generation
                batch = await self.next_batch()
                if not batch:
                    continue
                parsed = parse_batch(batch, generation)
                if in_flight is not None:
                    await in_flight
                in_flight = asyncio.ensure_future(self.finish(parsed))
        finally:
            if in_flight is not None:
                in_flight.cancel()  # a stop never commits a batch that is not stored

    async def finish(self, parsed: ParsedBatch) -> None:
        """Store, send stats, then commit the batch's offsets (unless the assignment changed)."""
        await store_batch(parsed, self.writer, dlq_topic)
        if self.settings.stats_enabled:
            await send_stats(parsed.good, user_batches_topic, film_batches_topic, self.settings.topic_partitions)
        if parsed.generation != self.listener.generation:
            log.info("loader: assignment changed during the batch; not committing it (it will be re-read)")
            return
        try:
            await asyncio.wait_for(self.consumer.commit(parsed.offsets), self.settings.network_timeout_s * 6)
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
