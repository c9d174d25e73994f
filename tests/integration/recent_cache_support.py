"""Helpers of the recent-watches cache tests: a running `RecentCache` on the test Redis, and a barrier
that waits until every invalidation Redis sent so far has been handled."""
from __future__ import annotations

import asyncio
import contextlib
import time
from typing import AsyncIterator, Callable

import pytest
import redis
import redis.asyncio as aioredis

from app.settings import Settings
from app.storage import redis_keys as keys
from app.web.recent_cache import RecentCache
from tests.integration.web_support import sync_redis

SENTINEL = 9_999_999  # a user only the barrier writes
DEADLINE_S = 60.0


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


@pytest.fixture
def conn(redis_settings: Settings) -> redis.Redis:
    """A client of the test's Redis database."""
    return sync_redis(redis_settings)


def mirrored(conn: redis.Redis, user_id: int, films: list[int]) -> None:
    """Replace the user's list as the stats agent does (DEL + RPUSH, newest first)."""
    pipe = conn.pipeline(transaction=True)
    pipe.delete(keys.recent(user_id))
    if films:
        pipe.rpush(keys.recent(user_id), *films)
    pipe.execute()


def lrange(user_id: int) -> tuple[str, str, int, int]:
    return ("LRANGE", keys.recent(user_id), 0, keys.RECENT_MAX - 1)


async def read(cache: RecentCache, client: aioredis.Redis, user_id: int) -> list[int]:
    """The user's recent films as the reader gets them: the copy, else Redis through the cache."""
    held = cache.get(user_id)
    if held is not None:
        return held
    replies = await cache.send_and_read(client, user_id, [lrange(user_id)], 0)
    return [int(f) for f in replies[0]]


async def settle(cache: RecentCache, client: aioredis.Redis, conn: redis.Redis) -> None:
    """Until every invalidation Redis sent before this call has been handled.

    Redis sends a client's invalidations in order on the one connection: the
    sentinel is read through the cache (so Redis tracks it for us) and then
    written; once its copy is gone, everything sent before it was handled too.
    A read that could not be kept (an invalidation crossed it) is repeated; a
    complete copy holds the sentinel once loaded (absent = no key). A load of the complete copy
    must be over first: its read of the sentinel's key could keep the new value after the
    invalidation was handled, and the sentinel would never leave the cache."""
    await until(lambda: cache.tracking and not cache.loading, "tracking on, no load running")
    deadline = time.monotonic() + DEADLINE_S
    while SENTINEL not in cache:
        await cache.send_and_read(client, SENTINEL, [lrange(SENTINEL)], 0)
        assert time.monotonic() < deadline, "the sentinel was never kept"
    conn.lpush(keys.recent(SENTINEL), 1)
    await until(lambda: SENTINEL not in cache, "the sentinel's invalidation")


@contextlib.asynccontextmanager
async def running_cache(settings: Settings, capacity: int = 1000, complete: bool = False
                        ) -> AsyncIterator[tuple[RecentCache, aioredis.Redis]]:
    """A cache with its invalidation connection up (`complete`: its complete copy loaded, or fallen
    back to per-user caching), and a request client (what the reader uses)."""
    cache = RecentCache(settings.redis_url, capacity, timeout_s=5.0, complete=complete)
    client = aioredis.Redis.from_url(settings.redis_url, socket_timeout=30, socket_connect_timeout=5)
    task = asyncio.create_task(cache.run())
    try:
        await asyncio.wait_for(cache.wait_tracking(), DEADLINE_S)
        if complete:
            await until(lambda: cache.complete or cache.fallbacks > 0, "the complete copy loaded")
        yield cache, client
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await cache.close()
        await client.aclose()
