"""The loader's consumed messages as columns, and `RawFetcher` against the real Kafka: the same
messages, offsets and positions as aiokafka's `getmany`, and a fallback to it that loses nothing."""
from __future__ import annotations

import asyncio
import time
import uuid
import numpy as np
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from agents.records import RawFetcher, RawRecords, Record
from app.settings import Settings
from app.storage.kafka_admin import ensure_topics
from tests.integration.ingest_support import produce


def _records() -> RawRecords:
    return RawRecords.from_messages([Record(b"k0", b"v0", "t", 0, 10), Record(None, None, "t", 3, 7),
                                     Record(b"k2", b"v2", "t", 0, 11)])


def test_rows_read_back_as_records_and_take_and_concat_keep_them() -> None:
    records = _records()
    assert len(records) == 3
    assert list(records) == [Record(b"k0", b"v0", "t", 0, 10), Record(None, None, "t", 3, 7),
                             Record(b"k2", b"v2", "t", 0, 11)]
    assert all(type(r.partition) is int and type(r.offset) is int for r in records)  # plain values in headers
    picked = records.take([2, 0])
    assert [(r.key, r.offset) for r in picked] == [(b"k2", 11), (b"k0", 10)]
    both = RawRecords.concat([picked, records.take(np.array([1]))])
    assert [r.offset for r in both] == [11, 10, 7] and both.partitions.tolist() == [0, 0, 3]
    assert RawRecords.from_messages(records) is records
    assert len(RawRecords.concat([])) == 0 and len(RawRecords.from_messages([])) == 0


def test_messages_of_two_topics_are_refused() -> None:
    with pytest.raises(ValueError, match="one topic"):
        RawRecords.from_messages([Record(b"k", b"v", "a", 0, 0), Record(b"k", b"v", "b", 0, 0)])


# --- against the real Kafka ---------------------------------------------------------------


def _consumer(settings: Settings, **extra) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(settings.topic_interactions, bootstrap_servers=settings.kafka_bootstrap,
                            group_id=f"records-test-{uuid.uuid4().hex[:8]}", auto_offset_reset="earliest",
                            enable_auto_commit=False, request_timeout_ms=int(settings.network_timeout_s * 6000),
                            max_partition_fetch_bytes=16_384, **extra)  # small fetches: many results per partition


async def _sent(settings: Settings, n: int) -> dict[int, list[tuple[bytes, bytes]]]:
    """n messages produced, as (key, value) per partition in offset order (read back with getmany)."""
    await ensure_topics(settings)
    await produce(settings, [(str(i % 17).encode(), f'{{"n": {i}, "pad": "{"x" * (i % 300)}"}}'.encode())
                             for i in range(n)])
    consumer = _consumer(settings)
    await asyncio.wait_for(consumer.start(), 30)
    by_partition: dict[int, list] = {}
    try:
        deadline = time.monotonic() + 60
        while sum(map(len, by_partition.values())) < n and time.monotonic() < deadline:
            for tp, messages in (await consumer.getmany(timeout_ms=500)).items():
                by_partition.setdefault(tp.partition, []).extend((m.key, m.value) for m in messages)
    finally:
        await consumer.stop()
    assert sum(map(len, by_partition.values())) == n, "the reference consumer did not read every message"
    return by_partition


async def _read_all(consumer: AIOKafkaConsumer, fetcher: RawFetcher, n: int,
                    got: dict[int, list] | None = None) -> dict[int, list]:
    got = {} if got is None else got
    deadline = time.monotonic() + 60
    while sum(map(len, got.values())) < n and time.monotonic() < deadline:
        for tp, records in (await fetcher.getmany(500, 1_000)).items():
            assert records.partitions.tolist() == [tp.partition] * len(records)
            rows = got.setdefault(tp.partition, [])
            assert records.offsets.tolist() == list(range(len(rows), len(rows) + len(records))), "a gap or a repeat"
            rows.extend(zip(records.keys, records.values))
    return got


@pytest.mark.integration
async def test_raw_reads_give_getmany_s_messages_offsets_and_positions(kafka_settings: Settings) -> None:
    settings = kafka_settings
    sent = await _sent(settings, 3_000)
    consumer = _consumer(settings)
    await asyncio.wait_for(consumer.start(), 30)
    try:
        fetcher = RawFetcher(consumer)
        got = await _read_all(consumer, fetcher, 3_000)
        assert fetcher.fallback is None, f"fell back to getmany: {fetcher.fallback}"
        assert got == sent
        positions = {tp.partition: await consumer.position(tp) for tp in consumer.assignment()}
        assert positions == {p: len(rows) for p, rows in sent.items()}
        await consumer.commit()  # commits the positions the raw reads moved
        assert {tp.partition: await consumer.committed(tp) for tp in consumer.assignment()} == positions
        assert await fetcher.getmany(200, 1_000) == {}  # nothing more, after waiting
    finally:
        await consumer.stop()


@pytest.mark.integration
@pytest.mark.parametrize("case, extra", [("partly read", {}),
                                         ("read_committed", {"isolation_level": "read_committed"})])
async def test_where_it_cannot_read_raw_it_falls_back_to_getmany_and_loses_nothing(
        kafka_settings: Settings, case: str, extra: dict) -> None:
    settings = kafka_settings
    sent = await _sent(settings, 2_000)
    consumer = _consumer(settings, **extra)
    await asyncio.wait_for(consumer.start(), 30)
    try:
        got: dict[int, list] = {}
        first: dict = {}
        while case == "partly read" and not first:  # one message by getmany: its fetch is left partly read
            first = await consumer.getmany(timeout_ms=500, max_records=1)
        for tp, messages in first.items():
            got.setdefault(tp.partition, []).extend((m.key, m.value) for m in messages)
        fetcher = RawFetcher(consumer)
        got = await _read_all(consumer, fetcher, 2_000, got)
        assert fetcher.fallback is not None and case in fetcher.fallback
        assert got == sent
    finally:
        await consumer.stop()
