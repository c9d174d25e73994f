"""End to end: a real worker subprocess loads a mix of good and bad events.

Exactly the good ones are visible in ClickHouse (by event_id, FINAL), each
once even when the site sent it twice; each bad one is in the DLQ with its
original bytes, its key and the reason. The live stats count each event once
too: the copies the site re-sent arrive in the same loader batch as the
originals (everything is in Kafka before the worker starts, and the batch
window is wide), where the loader drops repeated event_ids.
"""
from __future__ import annotations

import urllib.request
from collections import Counter
from pathlib import Path

import pytest
import redis

from agents.deadletter import reason_of
from agents.live import top_k
from agents.folds import apply_user
from app.localstack import proc
from app.storage import redis_keys
from app.storage.kafka_admin import ensure_topics
from app.worker_process import WorkerProcess
from tests.integration.ingest_support import (
    BAD_EVENTS, make_events, messages_of, produce, read_topic, stored_event_ids, wait_for_count,
)

pytestmark = [pytest.mark.integration, pytest.mark.redis_db(9)]


@pytest.fixture
def ingest_settings(clickhouse_settings, kafka_settings, redis_settings):
    return kafka_settings.with_overrides(
        clickhouse_url=clickhouse_settings.clickhouse_url,
        redis_url=redis_settings.redis_url,
        loader_batch_within_s=5.0,  # the whole backlog in one batch: re-sent copies meet their originals
        loader_batch_max=10_000,
    )


def _metric(worker: WorkerProcess, name: str) -> float:
    with urllib.request.urlopen(f"{worker.settings.web_url}/metrics", timeout=5) as response:
        lines = response.read().decode().splitlines()
    return sum(float(line.split()[-1]) for line in lines if line.startswith(name))


async def test_good_events_land_once_and_bad_ones_go_to_the_dlq(ingest_settings, tmp_path: Path) -> None:
    good = make_events(400)
    resent = good[:50]  # at-least-once producers resend: must not show twice
    bad_key = b"5"
    messages = messages_of(good) + [(bad_key, raw) for raw, _ in BAD_EVENTS] + messages_of(resent)
    await ensure_topics(ingest_settings, extra=[ingest_settings.user_batches_topic,
                                                 ingest_settings.film_batches_topic])
    await produce(ingest_settings, messages)

    recent = _expected_recent(good)
    plays = Counter(e.film_id for e in good if e.event_type == "play")
    trending = top_k(plays.items())
    live = redis.Redis.from_url(ingest_settings.redis_url, socket_timeout=5)
    with WorkerProcess(ingest_settings, tmp_path / "worker.log") as worker:
        seen = wait_for_count(ingest_settings, len(good), timeout=120, alive=worker.alive)
        dead = await read_topic(ingest_settings, ingest_settings.topic_dlq, len(BAD_EVENTS))
        # the stats agents mirrored every user's recent watches and the trending list (waited for)
        proc.wait_for(lambda: _recent_lists(live, recent) == recent, 60, alive=worker.alive)
        proc.wait_for(lambda: _trending(live) == trending, 60, alive=worker.alive)
        mirrored, mirrored_trending = _recent_lists(live, recent), _trending(live)
        dropped = _metric(worker, "cinerec_ingest_duplicates_dropped_total")

    assert seen == len(good)
    stored = stored_event_ids(ingest_settings)
    assert sorted(stored) == sorted(e.event_id for e in good)
    assert sorted((m.value, reason_of(m.headers)) for m in dead) == sorted(BAD_EVENTS)
    assert {m.key for m in dead} == {bad_key}
    assert all(dict(m.headers)["source_topic"] == ingest_settings.topic_interactions.encode() for m in dead)
    assert dropped == len(resent)
    assert mirrored == recent  # the re-sent copies changed nothing
    assert trending[0] and mirrored_trending == trending


def _expected_recent(events) -> dict[int, list[int]]:
    """Recent-watch lists the stats fold gives for these events (per user, in send order)."""
    state: dict[int, dict] = {}
    for event in events:
        state[event.user_id] = apply_user(state.get(event.user_id), event)
    return {user: s["recent"] for user, s in state.items() if s["recent"]}


def _recent_lists(live: redis.Redis, users) -> dict[int, list[int]]:
    return {user: [int(f) for f in live.lrange(redis_keys.recent(user), 0, -1)] for user in users}


def _trending(live: redis.Redis) -> tuple[list[int], list[float]]:
    return redis_keys.decode_ranked(live.get(redis_keys.TRENDING))
