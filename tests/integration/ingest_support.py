"""Helpers of the ingestion integration tests: build events, produce, read back."""
from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition

from app.events import Event, new_event_id
from app.localstack import proc
from app.producer import produce_messages, to_message
from app.settings import Settings
from app.storage.clickhouse import client
from app.storage.interactions import count_visible

# (raw bytes, the reason the loader must give) for each kind of bad event.
BAD_EVENTS: list[tuple[bytes, str]] = [
    (b"{not json", "malformed_json"),
    (b'{"event_id": "x1", "event_type": "play", "film_id": 3, "ts": 1700000000000}', "missing_user_id"),
    (b'{"event_id": "x2", "user_id": 5, "event_type": "teleport", "film_id": 3, "ts": 1700000000000}',
     "unknown_event_type"),
    (b'{"event_id": "x3", "user_id": 5, "event_type": "play", "film_id": 3, "ts": 99999999999999}', "future_ts"),
    (b'{"event_id": "x4", "user_id": 5, "event_type": "rate", "film_id": 3, "ts": 1700000000000, "rating": 42}',
     "bad_rating"),
    (b"[1, 2, 3]", "not_an_object"),
]


def make_events(n: int, seed: int = 7, start_ts: float | None = None) -> list[Event]:
    """`n` valid events of mixed types over a few users and films, one a second, ending a minute ago.

    Recent on purpose: windowed (trending) counts ignore events older than their expiry.
    """
    rnd = random.Random(seed)
    start_ts = time.time() - n - 60 if start_ts is None else start_ts
    out = []
    for i in range(n):
        event_type = rnd.choice(("play", "progress", "complete", "rate", "click", "page_view"))
        out.append(Event(
            event_id=new_event_id(),
            user_id=rnd.randint(1, 40),
            film_id=0 if event_type == "page_view" else rnd.randint(1, 25),
            event_type=event_type,
            ts=float(int(start_ts) + i),
            watch_seconds=float(rnd.randint(1, 5000)) if event_type in ("progress", "complete") else 0.0,
            duration_seconds=6000.0,
            rating=float(rnd.randint(1, 10)) if event_type == "rate" else 0.0,
        ))
    return out


def messages_of(events: Sequence[Event]) -> list[tuple[bytes, bytes]]:
    """(key, value) as the site sends them: key = user id."""
    return [to_message(e) for e in events]


async def produce(settings: Settings, messages: Sequence[tuple[bytes, bytes]]) -> None:
    """Send (key, value) pairs to the interactions topic and wait for all acks."""
    await produce_messages(settings, messages, total=len(messages), progress=False)


async def read_topic(settings: Settings, topic: str, expected: int, timeout: float = 60.0) -> list:
    """Consume `topic` from the beginning until `expected` messages arrived (or timeout)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, request_timeout_ms=int(settings.network_timeout_s * 6000))
    await asyncio.wait_for(consumer.start(), settings.network_timeout_s * 2)
    out: list = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expected and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                out.extend(records)
    finally:
        await consumer.stop()
    return out


def stored_event_ids(settings: Settings) -> list[str]:
    """event_id of every row readers see (FINAL: re-delivered copies collapsed)."""
    conn = client(settings)
    try:
        conn.execute("OPTIMIZE TABLE interactions FINAL")
        return [row[0] for row in conn.execute("SELECT event_id FROM interactions FINAL")]
    finally:
        conn.disconnect()


def wait_for_count(settings: Settings, expected: int, timeout: float, alive=lambda: True) -> int:
    """Poll ClickHouse until `expected` rows are visible (FINAL); returns the last count."""
    proc.wait_for(lambda: count_visible(settings) >= expected, timeout, alive=alive, interval=0.5)
    return count_visible(settings)



async def changelog_state(settings: Settings, table: str) -> dict:
    """A Faust table as its changelog topic holds it (JSON keys and values, the last write of
    each key, tombstones applied): the state every worker recovers from."""
    topic = f"{settings.app_id}-{table}-changelog"
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False,
                                request_timeout_ms=int(settings.network_timeout_s * 6000))
    await asyncio.wait_for(consumer.start(), settings.network_timeout_s * 2)
    state: dict = {}
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        deadline = time.monotonic() + 60
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end] and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    key = json.loads(record.key)
                    if record.value is None:
                        state.pop(key, None)
                    else:
                        state[key] = json.loads(record.value)
    finally:
        await consumer.stop()
    return state
