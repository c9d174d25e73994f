"""The recent-watches cache (app/web/recent_cache.py) against the real Redis: a copy is served only
while Redis tracks it, a write drops it, an invalidation crossing a read keeps the read from being
stored, and losing the invalidation connection drops everything and reads through until it is back."""
from __future__ import annotations

import asyncio

import pytest
import redis
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings as hyp_settings, strategies as st

from app.settings import Settings
from app.storage import redis_keys as keys
from app.web.recent_cache import RecentCache
from app.worker_process import free_port
from tests.integration.recent_cache_support import (  # noqa: F401 (conn: a fixture)
    conn, lrange, mirrored, read, running_cache, settle, until)

pytestmark = [pytest.mark.integration, pytest.mark.redis_db(3)]

USER, OTHER = 7_000_001, 7_000_002
GATE = "test:recent-cache:gate"


async def test_a_copy_is_served_until_redis_says_it_changed(redis_settings: Settings, conn: redis.Redis) -> None:
    mirrored(conn, USER, [3, 2, 1])
    async with running_cache(redis_settings) as (cache, client):
        assert await read(cache, client, USER) == [3, 2, 1]
        assert USER in cache
        hits = cache.hits
        assert cache.get(USER) == [3, 2, 1]
        assert cache.hits == hits + 1
        assert await read(cache, client, OTHER) == []  # no key: kept too (Redis tracks missing keys)
        assert OTHER in cache
        invalidations = cache.invalidations
        mirrored(conn, USER, [4, 3, 2, 1])
        conn.lpush(keys.recent(OTHER), 9)
        await until(lambda: USER not in cache and OTHER not in cache, "both invalidations")
        assert cache.invalidations == invalidations + 2
        assert await read(cache, client, USER) == [4, 3, 2, 1]
        assert await read(cache, client, OTHER) == [9]
        conn.flushdb()  # Redis says "everything" (a null key list)
        await until(lambda: len(cache) == 0, "the flush")
        assert await read(cache, client, USER) == []


async def test_an_invalidation_during_a_read_keeps_the_stale_reply_out(redis_settings: Settings,
                                                                      conn: redis.Redis) -> None:
    """The LRANGE runs, then Redis blocks on a BLPOP in the same round trip: the reply is held back
    while the key is rewritten and its invalidation handled. The stale reply must not be kept."""
    mirrored(conn, USER, [1])
    async with running_cache(redis_settings) as (cache, client):
        blocked_before = conn.info("clients")["blocked_clients"]
        reading = asyncio.create_task(cache.send_and_read(client, USER, [lrange(USER), ("BLPOP", GATE, 30)], 0))
        await until(lambda: conn.info("clients")["blocked_clients"] > blocked_before, "the read to run in Redis")
        assert cache.reads_in_flight == 1
        mirrored(conn, USER, [2, 1])
        await until(lambda: cache.reads_in_flight == 0, "the invalidation to reach the read in flight")
        conn.lpush(GATE, b"go")
        replies = await reading
        assert replies[0] == [b"1"]  # the value before the write: the read really crossed it
        assert USER not in cache
        assert await read(cache, client, USER) == [2, 1]
        assert USER in cache


async def test_losing_the_invalidation_connection_drops_every_copy(redis_settings: Settings,
                                                                  conn: redis.Redis) -> None:
    """A write while nobody listens sends its invalidation nowhere: only flushing keeps answers true."""
    mirrored(conn, USER, [1])
    async with running_cache(redis_settings) as (cache, client):
        assert await read(cache, client, USER) == [1]
        assert await read(cache, client, OTHER) == []
        assert cache.flushes == 0
        subscriber = cache._redirect
        conn.execute_command("CLIENT", "KILL", "ID", subscriber)
        mirrored(conn, USER, [2, 1])  # tracked with a redirect to the dead connection: lost
        await until(lambda: cache.tracking and cache._redirect != subscriber, "tracking back, new connection")
        assert cache.flushes == 1
        assert USER not in cache and OTHER not in cache
        assert await read(cache, client, USER) == [2, 1]
        assert USER in cache  # kept again, tracked for the new connection
        mirrored(conn, USER, [3, 2, 1])
        await until(lambda: USER not in cache, "an invalidation through the new connection")
        assert await read(cache, client, USER) == [3, 2, 1]


async def test_without_the_invalidation_connection_every_read_goes_to_redis(redis_settings: Settings,
                                                                           conn: redis.Redis) -> None:
    """The invalidation connection cannot be made (nothing listens on its port): nothing is kept."""
    cache = RecentCache(f"redis://127.0.0.1:{free_port()}/0", 1000, timeout_s=1.0)
    task = asyncio.create_task(cache.run())
    client = aioredis.Redis.from_url(redis_settings.redis_url, socket_timeout=30)
    try:
        for films in ([1], [2, 1], []):
            mirrored(conn, USER, films)
            assert await read(cache, client, USER) == films
            assert USER not in cache and not cache.tracking
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await cache.close()
        await client.aclose()


async def test_stop_ends_the_listener_without_a_cancel(redis_settings: Settings) -> None:
    """`stop()` alone ends `run` (a cancel that meets redis-py's read timeout is answered with None
    and was lost once: the web app's shutdown hung on the listener)."""
    cache = RecentCache(redis_settings.redis_url, 10, timeout_s=5.0)
    task = asyncio.create_task(cache.run())
    try:
        await cache.wait_tracking()
        cache.stop()
        await task  # ends by itself within PING_S; pytest-timeout guards a hang
        assert not cache.tracking
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await cache.close()


USERS = st.integers(min_value=7_000_010, max_value=7_000_015)
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("write"), USERS, st.lists(st.integers(1, 99), max_size=6)),
        st.tuples(st.just("read"), USERS, st.just([])),
    ),
    max_size=30,
)


@hyp_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS, capacity=st.integers(1, 4))
def test_any_sequence_of_writes_and_reads_answers_what_redis_holds(redis_settings: Settings, conn: redis.Redis,
                                                                  ops: list, capacity: int) -> None:
    """After each write has been announced (the barrier), the cache's answer for every user equals
    LRANGE on Redis, through LRU evictions (capacity 1-4 of 6 users) and re-reads."""

    async def scenario() -> None:
        async with running_cache(redis_settings, capacity) as (cache, client):
            for user in range(7_000_010, 7_000_016):
                conn.delete(keys.recent(user))
            await settle(cache, client, conn)
            for op, user, films in ops:
                if op == "write":
                    mirrored(conn, user, films)
                    await settle(cache, client, conn)
                else:
                    truth = [int(f) for f in conn.lrange(keys.recent(user), 0, keys.RECENT_MAX - 1)]
                    assert await read(cache, client, user) == truth
                assert len(cache) <= capacity

    asyncio.run(scenario())
