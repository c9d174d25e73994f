"""Each real service does the one thing the platform relies on: Kafka round-trips
an event, ClickHouse collapses a re-delivered interaction, Redis stores a key."""
from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime

import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord, RecordMetadata

from app.schema import INTERACTION_COLUMNS
from app.settings import Settings
from app.storage.clickhouse import client
from app.storage.kafka_admin import ensure_topics

pytestmark = pytest.mark.integration


async def test_kafka_round_trips_an_event(kafka_settings: Settings) -> None:
    s = kafka_settings
    event = {"event_id": str(uuid.uuid4()), "user_id": 7, "film_id": 42, "event_type": "play"}
    created = await ensure_topics(s, partitions=2)
    assert sorted(created) == sorted([s.topic_interactions, s.topic_dlq])
    sent = await _produce(s, json.dumps(event).encode(), key=b"7")
    message = await _consume_one(s)
    assert (message.partition, message.offset) == (sent.partition, sent.offset)
    assert message.key == b"7"
    assert json.loads(message.value) == event


async def _produce(s: Settings, value: bytes, key: bytes) -> RecordMetadata:
    producer = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap, request_timeout_ms=10_000)
    await producer.start()
    try:
        return await asyncio.wait_for(producer.send_and_wait(s.topic_interactions, value, key=key), timeout=30)
    finally:
        await producer.stop()


async def _consume_one(s: Settings) -> ConsumerRecord:
    consumer = AIOKafkaConsumer(
        s.topic_interactions, bootstrap_servers=s.kafka_bootstrap, group_id=s.app_id,
        auto_offset_reset="earliest", request_timeout_ms=10_000,
    )
    await consumer.start()
    try:
        return await asyncio.wait_for(consumer.getone(), timeout=60)
    finally:
        await consumer.stop()


def _row(event_id: str) -> tuple:
    values = {
        "event_id": event_id, "user_id": 7, "film_id": 42, "event_type": "complete",
        "ts": datetime(2026, 1, 2, 3, 4, 5),  # naive = UTC: the server runs in UTC
        "session_id": "s1", "watch_seconds": 5400.0, "duration_seconds": 5400.0, "rating": 0.0,
        "source": "", "model_version": "", "position": -1,
    }
    return tuple(values[c] for c in INTERACTION_COLUMNS)


def test_clickhouse_collapses_a_redelivered_interaction(clickhouse_settings: Settings) -> None:
    conn = client(clickhouse_settings)
    try:
        columns = ", ".join(INTERACTION_COLUMNS)
        event_id = str(uuid.uuid4())
        for _ in range(2):  # the same batch delivered twice (Kafka is at-least-once)
            conn.execute(f"INSERT INTO interactions ({columns}) VALUES", [_row(event_id)])
        conn.execute(f"INSERT INTO interactions ({columns}) VALUES", [_row(str(uuid.uuid4()))])
        final = conn.execute("SELECT event_id, watch_seconds FROM interactions FINAL WHERE event_id = %(e)s",
                             {"e": event_id})
        assert final == [(event_id, 5400.0)]
        assert conn.execute("SELECT count() FROM interactions FINAL")[0][0] == 2
        assert conn.execute("SELECT count() FROM interactions_dedup")[0][0] == 2
    finally:
        conn.disconnect()


@pytest.mark.redis_db(9)
async def test_redis_sets_and_gets_a_key(redis_settings: Settings) -> None:
    conn = aioredis.Redis.from_url(redis_settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        await conn.set("smoke:key", b"\x00value", ex=60)
        assert await conn.get("smoke:key") == b"\x00value"
        assert 0 < await conn.ttl("smoke:key") <= 60
    finally:
        await conn.aclose()
