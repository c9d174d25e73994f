"""Serving from memory answers exactly like reading every list from Redis (real Redis, db 2).

Three apps run side by side on the same Redis: lists in memory
(SERVE_MEMORY_MB=64), lists past the memory budget (1 MB: users read from
Redis through the hot-users cache, similar films in memory), and every list
read from Redis per request (SERVE_MEMORY_MB=0, how serving worked before).
The same requests go to all three; whenever they answer from the same version
(and experiment arm), the bodies must be identical: while a version is
stable, across a version switch and across an experiment start, all under
traffic.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import AsyncIterator, Callable

import numpy as np
import pytest
import redis
from aiohttp.test_utils import TestClient, TestServer

from app.experiments import store
from app.experiments.model import Experiment, State
from app.settings import Settings
from app.storage import redis_keys as keys
from app.web.keys import READER
from app.web import model_cache
from app.web.model_cache import ModelCache
from app.web.server import create_web_app
from tests.integration.web_support import FILMS, publish_version, served_redis, whole_json

pytestmark = [pytest.mark.integration, pytest.mark.redis_db(2)]

USERS = np.arange(1, 15_001, dtype=np.int64)  # 15,000 lists of 10: ~1.4 MB compacted, past a 1 MB budget
WITH_RECENT = range(1, 60)  # warm users who watched some films since (filtered out, list padded)
FOLDIN = range(20_001, 20_021)  # no list, recent watches: fold-in
COLD = range(30_001, 30_011)  # nothing: trending
DEADLINE_S = 60.0


@pytest.fixture
def conn(redis_settings: Settings) -> redis.Redis:
    return served_redis(redis_settings, 21, USERS, [*WITH_RECENT, *FOLDIN])


@pytest.fixture
async def apps(redis_settings: Settings, conn: redis.Redis, tmp_path: Path) -> AsyncIterator[dict[str, TestClient]]:
    """name -> client: `memory`, `budget` (past the memory budget), `redis` (no lists in memory)."""
    budgets = {"memory": 64, "budget": 1, "redis": 0}
    async with contextlib.AsyncExitStack() as stack:
        clients = {}
        for name, mb in budgets.items():
            settings = redis_settings.with_overrides(serve_memory_mb=mb, local_dir=tmp_path / name)
            clients[name] = await stack.enter_async_context(TestClient(TestServer(create_web_app(settings))))
        yield clients


def cache(client: TestClient) -> ModelCache:
    return client.app[READER].cache


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def in_memory(client: TestClient, *versions: str) -> bool:
    """Every one of `versions` is served by the app, with its user lists in memory."""
    loaded = {snap.version: snap.lists.users is not None for snap in cache(client).snapshots()}
    return all(loaded.get(v) for v in versions)


def paths(user_ids: list[int]) -> list[str]:
    out = []
    for user in user_ids:
        limit = (5, 10, 30)[user % 3]
        out.append(f"/v1/users/{user}/recommendations?limit={limit}")
        out.append(f"/v1/films/{FILMS[user % len(FILMS)]}/similar?limit={limit}&user_id={user}")
    return out


SAMPLE = [*WITH_RECENT, *FOLDIN, *COLD, *range(60, 15_001, 97)]


def answered_by(body: dict) -> tuple:
    return body.get("model_version"), body.get("experiment"), body.get("arm")


async def answers(apps: dict[str, TestClient], path: str) -> dict[str, dict]:
    """Each app's body for `path`, asked at the same time.

    On a machine loaded enough for a Redis read to pass the request's 250 ms
    budget, an app answers degraded (the in-process popular list): a
    legitimate answer, but not the one to compare, so the path is asked again
    (until the answers are whole, within the deadline)."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        responses = await asyncio.gather(*(client.get(path) for client in apps.values()))
        bodies = {}
        for name, response in zip(apps, responses):
            assert response.status == 200, (name, path, await response.text())
            bodies[name] = await response.json()
        if not any(body.get("degraded") for body in bodies.values()):
            return bodies
        assert time.monotonic() < deadline, f"{path}: degraded answers until the deadline: {bodies}"
        await asyncio.sleep(0.1)


async def compare(apps: dict[str, TestClient], path: str) -> dict[tuple, int]:
    """Send `path` to every app; bodies answered by the same version and arm must be equal.
    Returns how many apps answered per (version, experiment, arm)."""
    bodies = await answers(apps, path)
    groups: dict[tuple, list[str]] = {}
    for name, body in bodies.items():
        groups.setdefault(answered_by(body), []).append(name)
    for names in groups.values():
        first = bodies[names[0]]
        for other in names[1:]:
            assert bodies[other] == first, (path, names[0], other, first, bodies[other])
    return {key: len(names) for key, names in groups.items()}


async def compare_all(apps: dict[str, TestClient], user_ids: list[int]) -> None:
    for path in paths(user_ids):
        counts = await compare(apps, path)
        assert list(counts.values()) == [len(apps)], (path, counts)  # all from the same version here


async def test_answers_from_memory_equal_answers_from_redis(apps: dict[str, TestClient]) -> None:
    await until(lambda: in_memory(apps["memory"], "v1"), "v1's lists in memory")
    await until(lambda: cache(apps["budget"]).snapshot.lists.similar is not None, "v1's similar lists in memory")
    assert cache(apps["budget"]).snapshot.lists.users is None  # past the budget
    assert cache(apps["redis"]).snapshot.lists.users is None and cache(apps["redis"]).snapshot.lists.similar is None
    await compare_all(apps, SAMPLE)
    await compare_all(apps, SAMPLE)  # the second time through the hot-users cache
    assert len(cache(apps["budget"]).snapshot.lists.hot) > 0
    unknown = await apps["memory"].get("/v1/films/999/similar")
    assert unknown.status == 404


async def test_a_version_switch_and_an_experiment_under_traffic(
    apps: dict[str, TestClient], conn: redis.Redis
) -> None:
    await until(lambda: in_memory(apps["memory"], "v1"), "v1's lists in memory")
    seen: dict[tuple, int] = {}
    stop = asyncio.Event()

    async def traffic() -> None:
        while not stop.is_set():
            for path in paths(SAMPLE):
                for key, count in (await compare(apps, path)).items():
                    seen[key] = seen.get(key, 0) + count
                if stop.is_set():
                    return

    load = asyncio.create_task(traffic())
    try:
        publish_version(conn, "v2", seed=22, users=USERS)  # a new version goes live mid-traffic
        await until(lambda: in_memory(apps["memory"], "v2"), "v2's lists in memory")
        await until(lambda: ("v2", None, None) in seen, "answers from v2 under traffic")
        at = datetime(2026, 12, 1, tzinfo=timezone.utc)
        experiment = Experiment("exp-mem", control="v2", challenger="v1", share=0.5, created_at=at, started_at=at,
                                state=State.RUNNING)
        store.mirror(conn, experiment)  # then an experiment starts, v1 coming back as the challenger
        await until(lambda: cache(apps["memory"]).arms is not None and in_memory(apps["memory"], "v1", "v2"),
                    "both arms' lists in memory")
        await until(lambda: all(cache(c).arms is not None for c in apps.values()), "every app in the experiment")
        await until(lambda: {("v1", "exp-mem", "challenger"), ("v2", "exp-mem", "control")} <= set(seen),
                    "answers from both arms under traffic")
    finally:
        stop.set()
        await load
    await compare_all(apps, SAMPLE)  # settled: every app in the experiment, lists in memory
    versions = {key[0] for key in seen}
    arms = {key[2] for key in seen}
    assert {"v1", "v2"} <= versions and {None, "control", "challenger"} <= arms, seen
    conn.delete(keys.EXPERIMENT_ACTIVE)
    await until(lambda: all(cache(c).arms is None for c in apps.values()), "the experiment's end")
    await compare_all(apps, SAMPLE)


async def test_a_failed_load_into_memory_is_tried_again(redis_settings: Settings, conn: redis.Redis, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A load that fails (here: the host's directory cannot be made) leaves the version served from
    Redis and is tried again at a later poll, until it succeeds."""
    monkeypatch.setattr(model_cache, "LOAD_RETRY_S", 0.0)
    blocker = tmp_path / "serving"
    blocker.write_text("a file where the directory should be")
    settings = redis_settings.with_overrides(serve_memory_mb=64, local_dir=tmp_path)
    async with TestClient(TestServer(create_web_app(settings))) as client:
        lists = cache(client).snapshot.lists
        await until(lambda: lists.retry_at > 0, "a failed load")
        assert lists.users is None
        assert (await whole_json(client, "/v1/users/1/recommendations"))["source"] == "als"  # from Redis meanwhile
        blocker.unlink()
        await until(lambda: lists.users is not None, "the retried load")
