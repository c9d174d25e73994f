"""Loader agent: Kafka `interactions` -> ClickHouse `interactions`, bad events -> DLQ.

Per batch (`take_events(loader_batch_max, within=loader_batch_within_s)`):
parse all, publish the rejects to the DLQ, insert the valid ones, and only then
let `take` ack the batch. Both side effects are retried until they succeed
(capped backoff), because `take` acks even when the body raised. Re-delivery
after a crash re-inserts rows with the same event_id; the ReplacingMergeTree
and FINAL readers hide the copies (app/storage/clickhouse.py).
"""
from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

from clickhouse_driver import Client

from app import telemetry
from app.events import Event
from app.main import app, settings
from app.settings import Settings
from app.storage.clickhouse import client as clickhouse_client
from app.storage.interactions import insert_events
from app.topics import dlq_topic, interactions_topic
from agents import deadletter
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


async def load_batch(messages: Sequence[deadletter.RawMessage], writer: ClickHouseWriter, dlq) -> int:
    """Validate, dead-letter and store one batch; returns the valid event count."""
    telemetry.BATCH_SIZE.observe(len(messages))
    good, bad = deadletter.split_batch(messages)
    await deadletter.publish(dlq, bad)
    if good:
        await writer.store(good)
        telemetry.EVENTS_LOADED.inc(len(good))
        telemetry.INGEST_LAG.set(time.time() - max(event.ts for event in good))
    return len(good)


@app.agent(interactions_topic, name="loader")
async def loader(stream) -> None:
    """Deliver every event to ClickHouse or to the DLQ, batch by batch."""
    writer = ClickHouseWriter(settings)
    async for events in stream.take_events(settings.loader_batch_max, within=settings.loader_batch_within_s):
        messages = [event.message for event in events]
        try:
            await load_batch(messages, writer, dlq_topic)
        except asyncio.CancelledError:
            keep_uncommitted(messages)
            raise


def keep_uncommitted(messages: Sequence) -> None:
    """Stop Faust from committing a batch that was not stored.

    On a graceful stop (SIGTERM) while ClickHouse is down the agent is cancelled
    in the middle of the retries; `take` then acks the batch on its way out and
    the consumer commits acked offsets as it stops: the events would be lost.
    A message already flagged `acked` is skipped by the consumer's ack
    bookkeeping, so its offset is never recorded, the commit stops before it,
    and the next worker reads the batch again.
    """
    for message in messages:
        message.acked = True


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
