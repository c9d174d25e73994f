"""`cinerec serve` with recent watches cached in-process answers exactly like one that reads the Redis
mirror on every request (real Redis, db 5), while the mirror is rewritten by the stats agent's own writer
(`LiveMirror`) under traffic, and across a version switch.

Two apps run side by side: `cached` (RECENT_CACHE_USERS=500: with RECENT_CACHE_COMPLETE=0 fewer than
the users asked, so evictions too; with 1, the complete copy of the mirror, which has fewer users) and
`direct` (RECENT_CACHE_USERS=0). While writes and requests run concurrently the two may legitimately
differ for the time an invalidation travels; at each checkpoint the writes stop, the barrier waits until
the cached app has handled every invalidation sent, and every sampled user's answer must be identical
in both. In one round the cached app's invalidation connection is killed while writes and requests run.
"""
from __future__ import annotations

import asyncio
import contextlib
import random
from pathlib import Path
from typing import AsyncIterator

import numpy as np
import pytest
import redis
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer

from agents.live import LiveMirror
from app.settings import Settings
from app.web.keys import READER, SETTINGS
from app.web.recent_cache import RecentCache
from app.web.server import create_web_app
from tests.integration.recent_cache_support import settle, until
from tests.integration.web_support import publish_version, served_redis

pytestmark = [pytest.mark.integration, pytest.mark.redis_db(5)]

WARM = np.arange(1, 1_201, dtype=np.int64)
FOLDIN = list(range(20_001, 20_041))  # no list in v1: fold-in from their recent watches
COLD = list(range(30_001, 30_011))
SAMPLE = [*range(1, 1_201, 7), *FOLDIN, *COLD]
CHANGING = [*range(1, 1_201, 14), *FOLDIN[::2], *COLD[:3]]  # whose mirror is rewritten
ROUNDS = 4


@pytest.fixture
def conn(redis_settings: Settings) -> redis.Redis:
    return served_redis(redis_settings, 31, WARM, [*range(1, 60), *FOLDIN])


@pytest.fixture(params=[True, False], ids=["complete", "per-user"])
async def apps(redis_settings: Settings, conn: redis.Redis, tmp_path: Path,
               request: pytest.FixtureRequest) -> AsyncIterator[dict[str, TestClient]]:
    async with contextlib.AsyncExitStack() as stack:
        clients = {}
        for name, users in (("cached", 500), ("direct", 0)):
            settings = redis_settings.with_overrides(recent_cache_users=users, local_dir=tmp_path / name,
                                                     recent_cache_complete=request.param)
            clients[name] = await stack.enter_async_context(TestClient(TestServer(create_web_app(settings))))
        yield clients


def mirror_of(client: TestClient) -> RecentCache:
    mirror = client.app[READER].mirror
    assert mirror is not None
    return mirror


def mode_complete(apps: dict[str, TestClient]) -> bool:
    return apps["cached"].app[SETTINGS].recent_cache_complete


def serves(client: TestClient, version: str) -> bool:
    snap = client.app[READER].cache.snapshot
    return snap.version == version and snap.lists.users is not None


async def body(client: TestClient, path: str) -> dict:
    """The 200 body; asked again while degraded (a Redis read past the 250 ms budget on a loaded machine)."""
    while True:
        response = await client.get(path)
        assert response.status == 200, await response.text()
        answer = await response.json()
        if not answer.get("degraded"):
            return answer
        await asyncio.sleep(0.05)


async def compare(apps: dict[str, TestClient]) -> None:
    for user in SAMPLE:
        path = f"/v1/users/{user}/recommendations?limit={(5, 10, 30)[user % 3]}"
        cached, direct = await asyncio.gather(body(apps["cached"], path), body(apps["direct"], path))
        assert cached == direct, (path, cached, direct)


async def test_cached_recent_watches_answer_like_redis_under_writes_and_a_switch(
        redis_settings: Settings, conn: redis.Redis, apps: dict[str, TestClient]) -> None:
    await until(lambda: all(serves(c, "v1") for c in apps.values()), "v1's lists in memory")
    cached = mirror_of(apps["cached"])
    await until(lambda: cached.tracking, "tracking on")
    barrier_client = aioredis.Redis.from_url(redis_settings.redis_url, socket_timeout=30)
    writer = LiveMirror(redis_settings)
    rng = random.Random(12)
    stop = asyncio.Event()

    async def traffic() -> None:  # the cached app asked all the time, so reads cross the writes
        while not stop.is_set():
            user = rng.choice(SAMPLE)
            await apps["cached"].get(f"/v1/users/{user}/recommendations?limit=10")

    try:
        await compare(apps)
        for round_ in range(ROUNDS):
            stop.clear()
            load = [asyncio.create_task(traffic()) for _ in range(4)]
            for _ in range(5):  # mirror flushes while requests run
                for user in rng.sample(CHANGING, 20):
                    writer.set_recent(user, rng.sample(range(1, 31), rng.randint(0, 6)))
                await writer.flush()
                await asyncio.sleep(0)
            if round_ == 2:  # the invalidation connection dies mid-traffic: writes meanwhile go unannounced
                conn.execute_command("CLIENT", "KILL", "ID", cached._redirect)
                for user in rng.sample(CHANGING, 20):
                    writer.set_recent(user, rng.sample(range(1, 31), rng.randint(0, 6)))
                await writer.flush()
            if round_ == 1:  # a new version goes live mid-traffic: other users with lists
                publish_version(conn, "v2", seed=32, users=np.arange(200, 1_400, dtype=np.int64))
                await until(lambda: all(serves(c, "v2") for c in apps.values()), "v2's lists in memory")
            stop.set()
            await asyncio.gather(*load)
            await settle(cached, barrier_client, conn)
            await compare(apps)
            await compare(apps)  # the second time, the copies kept by the first
    finally:
        stop.set()
        await writer.redis.aclose()
        await barrier_client.aclose()
    assert cached.hits > 0 and cached.invalidations > 0  # the cached path really answered, and was corrected
    assert cached.flushes >= 1 and cached.complete == mode_complete(apps)
    assert len(cached) <= 500
    exposed = await (await apps["cached"].get("/metrics")).text()
    for line in ("cinerec_recent_cache_hits_total", "cinerec_recent_cache_misses_total",
                 "cinerec_recent_cache_invalidations_total", "cinerec_recent_cache_flushes_total",
                 "cinerec_recent_cache_users", "cinerec_recent_cache_tracking"):
        assert f"\n{line}" in exposed, line
