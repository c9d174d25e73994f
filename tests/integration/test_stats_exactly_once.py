"""Live stats count every event exactly once, on the real services, when Kafka delivers again.

Two ways batches come back: (1) the loader re-reads `interactions` (its
committed offsets reset, as after a crash before the commit) with other batch
boundaries, and the stats agents re-read every stats batch (the Faust
group's offsets reset too), on a worker with the persistent RocksDB store
(FAUST_STORE=rocksdb://, the production setting) whose local state survives
the restart; (2) a worker is killed with SIGKILL while events flow, and a
new one takes over. Either way the per-user and per-film stats, as the table
changelogs hold them, equal the fold of the distinct events.
"""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis
from aiokafka import AIOKafkaConsumer, TopicPartition

from agents import batches
from agents.folds import apply_film, apply_user
from app.events import Event
from app.localstack import proc
from app.producer import produce_messages
from app.storage.interactions import count_visible
from app.storage import redis_keys
from app.storage.kafka_admin import admin_client, group_caught_up
from app.worker_process import WorkerProcess
from tests.integration.ingest_support import (
    changelog_state, make_events, messages_of, produce, stored_event_ids, wait_for_count,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.redis_db(8)]

CHANGELOG_CUT = Path(__file__).parent / "changelog_cut"  # a sitecustomize that holds every changelog write
SETTLE_S = 240.0  # a SIGKILLed member leaves the group only after its session times out
BOOKKEEPING = ("src", "at")


@pytest.fixture
def stats_settings(clickhouse_settings, kafka_settings, redis_settings, tmp_path: Path):
    return kafka_settings.with_overrides(
        clickhouse_url=clickhouse_settings.clickhouse_url, redis_url=redis_settings.redis_url,
        local_dir=tmp_path / "local", loader_batch_max=100, loader_batch_within_s=0.2,
    )


def expected_stats(events: list[Event]) -> tuple[dict[int, dict], dict[int, dict]]:
    """(user stats, film stats) folded by hand over the distinct events, in send order."""
    users: dict[int, dict] = {}
    films: dict[int, dict] = {}
    viewers: set[tuple[int, int]] = set()
    for event in events:
        users[event.user_id] = apply_user(users.get(event.user_id), event)
        if event.event_type in batches.FILM_ACTION_TYPES:
            new_viewer = event.event_type == "play" and (event.film_id, event.user_id) not in viewers
            if event.event_type == "play":
                viewers.add((event.film_id, event.user_id))
            films[event.film_id] = apply_film(films.get(event.film_id), event, new_viewer)
    return users, films


def held_stats(settings) -> tuple[dict[int, dict], dict[int, dict]]:
    """(user stats, film stats) as the changelogs hold them, without the fold's bookkeeping."""
    def strip(table: dict) -> dict:
        return {key: {k: v for k, v in value.items() if k not in BOOKKEEPING} for key, value in table.items()}

    return (strip(asyncio.run(changelog_state(settings, "user-stats"))),
            strip(asyncio.run(changelog_state(settings, "film-stats"))))


def caught_up(settings) -> bool:
    return asyncio.run(group_caught_up(settings))


async def rewind(settings, group: str, topics: list[str], to: int | None = None) -> None:
    """Commit offset `to` (None: the beginning) for every partition of `topics` in `group`
    (no member may be running): the group reads everything from there again."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=group,
                                enable_auto_commit=False, request_timeout_ms=int(settings.network_timeout_s * 6000))
    await asyncio.wait_for(consumer.start(), settings.network_timeout_s * 2)
    try:
        tps = [TopicPartition(topic, p) for topic in topics for p in range(settings.topic_partitions)]
        consumer.assign(tps)
        starts = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.commit({tp: min(ends[tp], starts[tp] if to is None else to) for tp in tps})
    finally:
        await consumer.stop()


def _wait_for_stats(settings, want: tuple[dict, dict], alive) -> tuple[dict, dict]:
    assert proc.wait_for(lambda: caught_up(settings), SETTLE_S, alive=alive), "the worker never caught up"
    # caught up = the Faust group committed the stats batches, after flushing the changelogs
    proc.wait_for(lambda: held_stats(settings) == want, 30, alive=alive)
    return held_stats(settings)


def test_redelivered_batches_leave_the_stats_exact_with_the_rocksdb_store(stats_settings, tmp_path: Path) -> None:
    settings = stats_settings.with_overrides(faust_store="rocksdb://")
    events = make_events(600, seed=31)
    want = expected_stats(events)
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    with worker:
        asyncio.run(produce(settings, messages_of(events)))
        assert wait_for_count(settings, len(events), SETTLE_S, alive=worker.alive) == len(events)
        first = _wait_for_stats(settings, want, worker.alive)
    assert first == want
    assert any((tmp_path / "local" / "faust").rglob("*.sst")) or any((tmp_path / "local" / "faust").rglob("*.log")), \
        "the RocksDB store wrote nothing to the datadir"

    # Everything again: the loader from its start with other batch boundaries, the stats agents
    # from the first stats batch. Same worker (same web port, so the same RocksDB datadir).
    asyncio.run(rewind(settings, settings.loader_group, [settings.topic_interactions], to=37))
    asyncio.run(rewind(settings, settings.app_id, [settings.user_batches_topic, settings.film_batches_topic]))
    worker.settings = worker.settings.with_overrides(loader_batch_max=61)
    with worker:
        again = _wait_for_stats(settings, want, worker.alive)
    assert again == want
    assert sorted(stored_event_ids(settings)) == sorted(e.event_id for e in events)


def test_a_worker_killed_mid_batch_leaves_the_stats_exact(stats_settings, tmp_path: Path) -> None:
    events = make_events(3000, seed=32)
    want = expected_stats(events)
    first = WorkerProcess(stats_settings, tmp_path / "worker1.log").start()

    async def paced() -> None:  # the site keeps sending while the worker dies
        await produce_messages(stats_settings, messages_of(events), total=len(events), rate=800, progress=False)

    async def kill_mid_stream() -> None:
        producing = asyncio.create_task(paced())
        try:
            loaded = await asyncio.to_thread(wait_for_count, stats_settings, 600, 60, first.alive)
            assert loaded >= 600
        finally:
            first.kill()  # SIGKILL: no commit, no changelog flush
        assert count_visible(stats_settings) < len(events), "the worker finished before it was killed"
        await producing

    asyncio.run(kill_mid_stream())
    with WorkerProcess(stats_settings, tmp_path / "worker2.log") as second:
        assert wait_for_count(stats_settings, len(events), SETTLE_S, alive=second.alive) == len(events)
        held = _wait_for_stats(stats_settings, want, second.alive)
    assert held == want


def mirrored_recent(settings, users: list[int]) -> dict[int, list[int]]:
    conn = redis.Redis.from_url(settings.redis_url, socket_timeout=5)
    try:
        return {user: [int(f) for f in conn.lrange(redis_keys.recent(user), 0, -1)] for user in users}
    finally:
        conn.close()


async def committed_stats_offsets(settings) -> dict:
    """The Faust group's committed offsets of the stats batch topics (only those committed)."""
    tps = [TopicPartition(topic, p) for topic in (settings.user_batches_topic, settings.film_batches_topic)
           for p in range(settings.topic_partitions)]
    async with admin_client(settings) as admin:
        return {tp: meta.offset for tp, meta in (await admin.list_consumer_group_offsets(settings.app_id,
                                                                                       partitions=tps)).items()
                if meta.offset >= 0}


def test_no_commit_passes_a_batch_whose_changelog_write_is_in_flight(stats_settings, tmp_path: Path,
                                                                    monkeypatch) -> None:
    """The agents fold a batch while the broker acknowledges the previous one's changelog, and their
    iteration ends at the send: offset commits wait for the acks (app/commits.py). Here the first
    worker's changelog producer is cut off the broker (tests/integration/changelog_cut: its batches
    never leave the process, every write stays in flight); its agents fold every batch (the Redis
    mirror holds every user's final recent films), go idle and ask for a commit; then it is
    SIGKILLed. A commit past any folded batch would make the next worker skip that batch: its
    stats equal the fold of the distinct events only if none was committed."""
    events = make_events(1500, seed=33)
    want = expected_stats(events)
    recent = {user: stats["recent"] for user, stats in want[0].items() if stats["recent"]}
    monkeypatch.setenv("PYTHONPATH", str(CHANGELOG_CUT))
    first = WorkerProcess(stats_settings, tmp_path / "worker1.log").start()
    monkeypatch.delenv("PYTHONPATH")
    try:
        asyncio.run(produce(stats_settings, messages_of(events)))
        assert proc.wait_for(lambda: mirrored_recent(stats_settings, list(recent)) == recent, SETTLE_S,
                             alive=first.alive), "the first worker did not fold every batch"
        assert asyncio.run(committed_stats_offsets(stats_settings)) == {}
    finally:
        first.kill()
    assert asyncio.run(changelog_state(stats_settings, "user-stats")) == {}, "the changelog was not cut off"
    with WorkerProcess(stats_settings, tmp_path / "worker2.log") as second:
        held = _wait_for_stats(stats_settings, want, second.alive)
    assert held == want
