"""The recent-watches cache's complete copy (`RecentCache(complete=True)`, app/web/recent_cache.py)
against the real Redis: every user of the mirror is loaded, a user without a key is answered without
Redis, a write (or a new user) makes the user a miss until read again, a FLUSHDB and a lost connection
load it all again, and a mirror larger than the bound falls back to per-user caching."""
from __future__ import annotations

import asyncio
import random
import time

import pytest
import redis
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings as hyp_settings, strategies as st

from app.settings import Settings
from app.storage import redis_keys as keys
from app.web import metrics, recent_cache
from app.web.recent_cache import RecentCache
from tests.integration.recent_cache_support import (  # noqa: F401 (conn: a fixture)
    DEADLINE_S, conn, mirrored, read, running_cache, settle, until)

pytestmark = [pytest.mark.integration, pytest.mark.redis_db(3)]

USERS = range(8_000_001, 8_000_301)  # 300 users in the mirror before the cache starts
NEW = 8_100_001  # a user whose key appears after the load


def truth(conn: redis.Redis, user_id: int) -> list[int]:
    return [int(f) for f in conn.lrange(keys.recent(user_id), 0, keys.RECENT_MAX - 1)]


def fill(conn: redis.Redis, seed: int = 1) -> None:
    rng = random.Random(seed)
    pipe = conn.pipeline(transaction=False)
    for user in USERS:
        pipe.rpush(keys.recent(user), *rng.sample(range(1, 99), rng.randint(1, 8)))
    pipe.execute()


async def test_every_user_is_answered_from_the_copy_until_it_changes(redis_settings: Settings,
                                                                    conn: redis.Redis) -> None:
    fill(conn)
    async with running_cache(redis_settings, capacity=1000, complete=True) as (cache, client):
        assert len(cache) == len(USERS)
        misses = cache.misses
        for user in USERS:
            assert cache.get(user) == truth(conn, user)
        assert cache.get(NEW) == []  # no key: known empty, no Redis read
        assert cache.misses == misses
        mirrored(conn, USERS[0], [5, 4])
        mirrored(conn, NEW, [7])
        await until(lambda: USERS[0] not in cache and NEW not in cache, "both invalidations")
        assert cache.get(NEW) is None and cache.misses == misses + 1  # stale: read Redis
        assert await read(cache, client, NEW) == [7]
        assert await read(cache, client, USERS[0]) == [5, 4]
        assert NEW in cache and cache.get(NEW) == [7] and cache.get(USERS[0]) == [5, 4]
        mirrored(conn, NEW, [])  # deleted: after a read, held as "no recent watches"
        await until(lambda: NEW not in cache, "the deletion's invalidation")
        assert await read(cache, client, NEW) == []
        assert NEW in cache and cache.get(NEW) == []


async def test_a_flush_and_a_lost_connection_load_the_copy_again(redis_settings: Settings,
                                                                conn: redis.Redis) -> None:
    fill(conn)
    async with running_cache(redis_settings, capacity=1000, complete=True) as (cache, client):
        conn.flushdb()
        mirrored(conn, NEW, [3])
        await until(lambda: cache.complete and len(cache) == 1, "the copy loaded again after the flush")
        assert cache.get(USERS[5]) == [] and cache.get(NEW) == [3]
        subscriber = cache._redirect
        conn.execute_command("CLIENT", "KILL", "ID", subscriber)
        mirrored(conn, NEW, [4, 3])  # announced to nobody: only reloading keeps the copy true
        mirrored(conn, USERS[5], [9])
        await until(lambda: cache.complete and cache._redirect != subscriber, "the copy loaded again")
        assert cache.flushes == 1
        assert cache.get(NEW) == [4, 3] and cache.get(USERS[5]) == [9]


async def test_writes_while_the_copy_loads_are_never_lost(redis_settings: Settings, conn: redis.Redis,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Users rewritten while the SCAN load runs (10 keys a step: 30 steps), and read through meanwhile,
    answer what Redis holds once the copy is complete."""
    monkeypatch.setattr(recent_cache, "_SCAN_COUNT", 10)
    fill(conn)
    rng = random.Random(3)
    cache = RecentCache(redis_settings.redis_url, 1000, timeout_s=5.0, complete=True)
    client = aioredis.Redis.from_url(redis_settings.redis_url, socket_timeout=30)
    task = asyncio.create_task(cache.run())
    deadline = time.monotonic() + DEADLINE_S
    try:
        writes = 0
        while not cache.complete:
            assert time.monotonic() < deadline, "the copy never completed"
            mirrored(conn, rng.choice(USERS), rng.sample(range(1, 99), rng.randint(0, 5)))
            writes += 1
            await read(cache, client, rng.choice(USERS))
            await asyncio.sleep(0)
        assert writes > 1  # the load really ran under writes
        await settle(cache, client, conn)
        for user in [*USERS, NEW]:
            assert await read(cache, client, user) == truth(conn, user)
    finally:
        cache.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await cache.close()
        await client.aclose()


async def test_a_mirror_larger_than_the_bound_falls_back_to_per_user_caching(redis_settings: Settings,
                                                                            conn: redis.Redis) -> None:
    fill(conn)
    async with running_cache(redis_settings, capacity=100, complete=True) as (cache, client):
        await until(lambda: cache.fallbacks == 1 and cache.tracking and not cache._bcast, "the fall-back")
        assert not cache.complete
        exposed = {m.name: m.samples[0].value for m in metrics.RECENT_CACHES.collect()}
        assert exposed["cinerec_recent_cache_complete"] == 0
        assert exposed["cinerec_recent_cache_fallbacks"] >= 1
        assert cache.get(NEW) is None  # per user again: a user not held is read
        assert await read(cache, client, USERS[1]) == truth(conn, USERS[1])
        assert USERS[1] in cache
        mirrored(conn, USERS[1], [1])
        await until(lambda: USERS[1] not in cache, "the per-user invalidation")


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(8_000_001, 8_000_008), st.lists(st.integers(1, 99), max_size=6)),
        st.tuples(st.just("read"), st.integers(8_000_001, 8_000_008), st.just([])),
    ),
    max_size=30,
)


@hyp_settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
def test_any_sequence_of_writes_and_reads_answers_what_redis_holds(redis_settings: Settings, conn: redis.Redis,
                                                                  ops: list) -> None:
    """After each write has been announced (the barrier), the complete copy's answer for every user equals
    LRANGE on Redis, without a Redis read for a user not written since their last read."""

    async def scenario() -> None:
        conn.flushdb()
        mirrored(conn, 8_000_001, [1, 2])
        async with running_cache(redis_settings, complete=True) as (cache, client):
            for op, user, films in ops:
                if op == "write":
                    mirrored(conn, user, films)
                    await settle(cache, client, conn)
                else:
                    assert await read(cache, client, user) == truth(conn, user)
                    assert user in cache

    asyncio.run(scenario())
