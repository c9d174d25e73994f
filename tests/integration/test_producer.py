"""EventProducer against the real Kafka: what is sent comes back keyed by user, in order per user."""
from __future__ import annotations

import asyncio

import pytest

from app.events import parse_event
from app.producer import EventProducer, ProducerError, produce_sync
from app.settings import Settings
from app.simulate import generate
from app.storage.kafka_admin import ensure_topics
from tests.integration.ingest_support import read_topic

pytestmark = pytest.mark.integration

END = 1_750_000_000.0


def _events(n: int, seed: int) -> list:
    return list(generate(60, 40, n, seed=seed, days=3, end_ts=END)[1])


async def test_send_many_send_and_send_raw_arrive_keyed_by_user(kafka_settings: Settings) -> None:
    await ensure_topics(kafka_settings)
    events = _events(3_000, seed=21)
    async with EventProducer(kafka_settings) as producer:
        assert await producer.send_many(events[:-1]) == len(events) - 1
        await producer.send(events[-1])
        await producer.send_raw(b"42", b"{not json")
        assert producer.sent == len(events) + 1

    records = await read_topic(kafka_settings, kafka_settings.topic_interactions, len(events) + 1)
    assert len(records) == len(events) + 1
    raw = [r for r in records if r.value == b"{not json"]
    assert [r.key for r in raw] == [b"42"]
    received = [parse_event(r.value, now=END) for r in records if r.value != b"{not json"]
    assert all(r.key == str(parse_event(r.value, now=END).user_id).encode() for r in records if r not in raw)
    assert sorted(received) == sorted(events)
    # One user's events share a partition, so they arrive in the order sent.
    partitions_of_user: dict[int, set[int]] = {}
    for r in records:
        if r not in raw:
            partitions_of_user.setdefault(int(r.key), set()).add(r.partition)
    assert all(len(p) == 1 for p in partitions_of_user.values())
    for user in list(partitions_of_user)[:10]:
        sent = [e.event_id for e in events if e.user_id == user]
        got = [e.event_id for e in received if e.user_id == user]
        assert got == sent


async def test_produce_sync_for_scripts(kafka_settings: Settings) -> None:
    await ensure_topics(kafka_settings)
    events = _events(200, seed=22)
    # A script has no event loop of its own: run the blocking helper in a thread.
    assert await asyncio.to_thread(produce_sync, kafka_settings, events) == len(events)
    records = await read_topic(kafka_settings, kafka_settings.topic_interactions, len(events))
    assert {parse_event(r.value, now=END).event_id for r in records} == {e.event_id for e in events}


async def test_unreachable_broker_is_a_clear_error() -> None:
    settings = Settings.from_env({"KAFKA_BROKER": "kafka://127.0.0.1:1", "NETWORK_TIMEOUT_S": "1"})
    with pytest.raises(ProducerError, match="cannot connect to Kafka at 127.0.0.1:1"):
        async with EventProducer(settings):
            pass
