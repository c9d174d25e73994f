"""Poison events on the real services: one bad record never stops ingestion.

Every kind of bad input found so far, sent mixed with good events to a real
worker process: the worker stays up, every good event is in ClickHouse
exactly once, each bad one is in the DLQ with its reason (cut to fit Kafka's
message limit), and the committed offsets move past them. A restart must not
crash and must go on loading. One more class needs the server's help:
records ClickHouse itself refuses (here a column narrowed below what the
validator accepts) are found by splitting the batch and dead-lettered; and a
missing table, which no retry can fix, stops the worker with one clear line
without committing anything, so that fixing the schema and restarting loses nothing.
"""
from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from agents.deadletter import DLQ_VALUE_MAX, reason_of
from app.events import Event
from app.localstack import proc
from app.storage.clickhouse import client, migrate
from app.storage.kafka_admin import ensure_topics, group_caught_up
from app.worker_process import WorkerProcess
from tests.integration.ingest_support import (
    make_events, messages_of, produce, read_topic, stored_event_ids, wait_for_count,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.redis_db(10)]

SETTLE_S = 120.0
GOOD_TEMPLATE = {"event_id": "p", "user_id": 7, "film_id": 3, "event_type": "play", "ts": 1_700_000_000_000}


def _event(**fields: object) -> bytes:
    return json.dumps({**GOOD_TEMPLATE, **fields}).encode()


# key -> (value, reason). Keys name the poison: the DLQ copy of a big one is cut, its key is not.
POISON: dict[bytes, tuple[bytes | None, str]] = {
    b"superscript-two": (_event(event_id="p1", user_id="²"), "bad_user_id"),
    b"type-list": (_event(event_id="p2", event_type=["play"]), "unknown_event_type"),
    b"type-object": (_event(event_id="p3", event_type={"play": True}), "unknown_event_type"),
    b"digits-5000": (_event(event_id="p4", user_id="9" * 5000), "bad_user_id"),
    b"json-bomb": (b"[" * 20_000 + b"]" * 20_000, "malformed_json"),
    b"bomb-in-a-field": (b'{"event_id":"p5","event_type":' + b"[" * 3000 + b"]" * 3000 + b"}", "malformed_json"),
    b"one-megabyte": (_event(event_id="p6", session_id="x" * 1_000_000), "too_large"),
    b"oversized-letter": (_event(event_id="p7", user_id="9" * 520_000), "too_large"),
    b"big-bad-field": (_event(event_id="p8", user_id="y" * 50_000), "bad_user_id"),  # detail would be 50 KB
    b"invalid-utf8": (b'{"event_id": "p9\xff\xfe", "user_id": 7}', "malformed_json"),
    b"lone-surrogate": (_event(event_id="\ud800"), "malformed_json"),
    b"huge-int": (_event(event_id="p10", user_id=10**30), "bad_user_id"),  # orjson reads it as a float
    b"infinite-number": (b'{"event_id": "p11", "user_id": 1' + b"0" * 400 + b"}", "malformed_json"),
    b"tombstone": (None, "empty"),
    b"not-an-object": (b"[1, 2, 3]", "not_an_object"),
}
# Needs the narrowed column (below): valid for the validator, refused by ClickHouse.
REFUSED_KEY = b"refused-by-clickhouse"


def _refused_event() -> Event:
    return make_events(1, seed=99)[0]._replace(event_id="refused", position=5000)


@pytest.fixture
def poison_settings(clickhouse_settings, kafka_settings, redis_settings, tmp_path: Path):
    return kafka_settings.with_overrides(
        clickhouse_url=clickhouse_settings.clickhouse_url, redis_url=redis_settings.redis_url,
        local_dir=tmp_path / "local", loader_batch_max=100, loader_batch_within_s=0.2,
    )


def _ready_checks(worker: WorkerProcess) -> dict:
    try:
        with urllib.request.urlopen(f"{worker.settings.web_url}/ready", timeout=5) as response:
            return json.loads(response.read())["checks"]
    except urllib.error.HTTPError as exc:  # 503: no model published in this test
        return json.loads(exc.read())["checks"]


async def _messages_in(settings, topic: str) -> int:
    """Messages in `topic` now (sum of its partitions' end offsets; nothing is deleted in a test)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                                request_timeout_ms=int(settings.network_timeout_s * 6000))
    await asyncio.wait_for(consumer.start(), settings.network_timeout_s * 2)
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.topic_partitions)]
        return sum((await consumer.end_offsets(tps)).values())
    finally:
        await consumer.stop()


def _caught_up(settings) -> bool:
    return asyncio.run(group_caught_up(settings))


def test_poison_events_are_dead_lettered_and_ingestion_goes_on(poison_settings, tmp_path: Path) -> None:
    settings = poison_settings
    conn = client(settings)
    conn.execute("ALTER TABLE interactions MODIFY COLUMN position Int8")  # narrower than the validator allows
    conn.disconnect()
    good = make_events(300, seed=21)
    duplicate = good[10]
    refused = _refused_event()
    rest = iter(good)
    messages: list[tuple[bytes, bytes | None]] = []
    for key, (value, _) in POISON.items():  # each poison between good events
        messages += messages_of([next(rest) for _ in range(10)]) + [(key, value)]
    messages += [(REFUSED_KEY, refused.to_bytes())] + messages_of([duplicate]) + messages_of(list(rest))
    expected = {**{key: reason for key, (_, reason) in POISON.items()}, REFUSED_KEY: "rejected_by_clickhouse"}
    later = make_events(50, seed=22)

    with WorkerProcess(settings, tmp_path / "worker1.log") as worker:
        asyncio.run(produce(settings, messages))
        assert wait_for_count(settings, len(good), SETTLE_S, alive=worker.alive) == len(good)
        dead = asyncio.run(read_topic(settings, settings.topic_dlq, len(expected), timeout=SETTLE_S))
        assert proc.wait_for(lambda: _caught_up(settings), SETTLE_S, alive=worker.alive), \
            "the committed offsets never moved past the poison"
        assert worker.alive(), "the worker died on a poison event"
        assert _ready_checks(worker)["loader"]["ok"], "the loader check says stalled after the poison"

    assert sorted(stored_event_ids(settings)) == sorted(e.event_id for e in good)  # each once
    assert {m.key: reason_of(m.headers) for m in dead} == expected
    assert len(dead) == len(expected)
    for letter in dead:
        headers = dict(letter.headers)
        assert len(letter.value or b"") <= DLQ_VALUE_MAX and len(headers["detail"]) < 1000
        assert headers["source_topic"] == settings.topic_interactions.encode()
    cut = {m.key: dict(m.headers) for m in dead if "truncated" in dict(m.headers)}
    assert set(cut) == {b"one-megabyte", b"oversized-letter"}
    assert {int(h["original_bytes"]) for h in cut.values()} == {len(POISON[k][0]) for k in cut}
    small = {m.key: m.value for m in dead if m.key not in cut}
    assert small == {key: value for key, (value, _) in POISON.items() if key not in cut} | {
        REFUSED_KEY: refused.to_bytes()}  # the original bytes, untouched

    # A restart reads nothing again (all committed), does not crash, and loads new events.
    with WorkerProcess(settings, tmp_path / "worker2.log") as worker:
        asyncio.run(produce(settings, messages_of(later)))
        seen = wait_for_count(settings, len(good) + len(later), SETTLE_S, alive=worker.alive)
        assert proc.wait_for(lambda: _caught_up(settings), SETTLE_S, alive=worker.alive)
        assert worker.alive()
    assert seen == len(good) + len(later)
    assert asyncio.run(_messages_in(settings, settings.topic_dlq)) == len(expected), \
        "the restart dead-lettered the poison a second time"


def test_a_missing_table_stops_the_worker_with_one_clear_line_and_loses_nothing(
    poison_settings, tmp_path: Path
) -> None:
    settings = poison_settings
    events = make_events(60, seed=23)  # one batch: nothing else comes to wake the loader up
    asyncio.run(ensure_topics(settings, extra=[settings.user_batches_topic, settings.film_batches_topic]))
    conn = client(settings)
    conn.execute("DROP TABLE interactions")
    conn.disconnect()
    log = tmp_path / "worker1.log"
    worker = WorkerProcess(settings, log).start()
    try:
        asyncio.run(produce(settings, messages_of(events)))
        assert proc.wait_for(lambda: not worker.alive(), SETTLE_S, alive=lambda: True), \
            "the worker kept running (retrying) although the table does not exist"
    finally:
        worker.stop()
    lines = [line for line in log.read_text(errors="replace").splitlines() if "STOPPING the worker" in line]
    assert len(lines) == 1 and "cinerec db migrate" in lines[0], lines

    migrate(settings)  # the operator fixes the schema and restarts: nothing was committed, nothing lost
    with WorkerProcess(settings, tmp_path / "worker2.log") as worker:
        seen = wait_for_count(settings, len(events), SETTLE_S, alive=worker.alive)
    assert seen == len(events)
    assert sorted(stored_event_ids(settings)) == sorted(e.event_id for e in events)
