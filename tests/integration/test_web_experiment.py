"""Experiment arms in serving, through the real app against the real Redis (db 4).

While `exp:active` names a running experiment, each user is answered from
their arm's version (the stable hash of app.experiments.assignment) on every
path, and the answer names the experiment and the arm; starting and stopping
an experiment is followed without a restart.
"""
from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from typing import AsyncIterator, Callable

import numpy as np
import pytest
import redis
from aiohttp.test_utils import TestClient

from app.experiments import store
from app.experiments.assignment import CHALLENGER, CONTROL, arm_of
from app.experiments.model import Experiment, State
from app.recsys.training.publish import rollback
from app.settings import Settings
from app.storage import redis_keys as keys
from app.web.keys import READER
from tests.integration.web_support import Published, publish_version, running_client, sync_redis, watched, whole_json

pytestmark = [pytest.mark.integration, pytest.mark.redis_db(4)]

USERS = np.arange(1, 201, dtype=np.int64)
FOLDIN_USER = 10_001  # no list in either version, recent watches only
DEADLINE_S = 30.0


@pytest.fixture
def conn(redis_settings: Settings) -> redis.Redis:
    return sync_redis(redis_settings)


@pytest.fixture
def versions(conn: redis.Redis) -> dict[str, Published]:
    """v1 (served, the control) and v2 (published, then the pointer rolled back to v1)."""
    v1 = publish_version(conn, "v1", seed=11, users=USERS)
    v2 = publish_version(conn, "v2", seed=12, users=USERS)
    rollback(conn, "v1")
    watched(conn, FOLDIN_USER, [4, 9, 4])
    return {"v1": v1, "v2": v2}


@pytest.fixture
async def client(redis_settings: Settings, versions: dict[str, Published]) -> AsyncIterator[TestClient]:
    async for client in running_client(redis_settings):
        yield client


def running(experiment_id: str = "exp-arms", share: float = 0.5) -> Experiment:
    at = datetime(2026, 12, 1, tzinfo=timezone.utc)
    return Experiment(experiment_id, control="v1", challenger="v2", share=share, created_at=at, started_at=at,
                      state=State.RUNNING)


def arm(experiment: Experiment, user_id: int) -> str:
    return arm_of(experiment.hash_seed, experiment.threshold, user_id)


async def get_json(client: TestClient, path: str) -> dict:
    return await whole_json(client, path)


def ids(body: dict) -> list[int]:
    return [item["film_id"] for item in body["items"]]


async def until(client: TestClient, condition: Callable[[dict], bool], path: str = "/v1/users/1/recommendations") -> dict:
    """Poll `path` until its body satisfies `condition` (the poller follows Redis about once a second)."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        body = await get_json(client, path)
        if condition(body) or time.monotonic() > deadline:
            assert condition(body), body
            return body
        await asyncio.sleep(0.05)


def expected_version(experiment: Experiment | None, user_id: int) -> str:
    if experiment is None:
        return "v1"
    return experiment.challenger if arm(experiment, user_id) == CHALLENGER else experiment.control


async def test_without_an_experiment_nobody_gets_arm_fields(client: TestClient, versions: dict[str, Published]) -> None:
    body = await get_json(client, "/v1/users/1/recommendations?limit=10")
    assert body["model_version"] == "v1" and ids(body) == versions["v1"].user_recs[1]
    assert "experiment" not in body and "arm" not in body
    similar = await get_json(client, "/v1/films/3/similar?user_id=1")
    assert similar["model_version"] == "v1" and "experiment" not in similar


async def test_users_split_by_the_hash_get_their_arms_lists_on_every_path(
    client: TestClient, conn: redis.Redis, versions: dict[str, Published]
) -> None:
    experiment = running()
    store.mirror(conn, experiment)
    await until(client, lambda body: body.get("experiment") == experiment.id)
    seen_arms = set()
    for user_id in USERS.tolist():
        body = await get_json(client, f"/v1/users/{user_id}/recommendations?limit=10")
        version = expected_version(experiment, user_id)
        assert (body["experiment"], body["arm"]) == (experiment.id, arm(experiment, user_id))
        assert body["model_version"] == version and body["source"] == "als"
        assert ids(body) == versions[version].user_recs[user_id]
        seen_arms.add(body["arm"])
    assert seen_arms == {CONTROL, CHALLENGER}

    # fold-in: the arm's factors
    body = await get_json(client, f"/v1/users/{FOLDIN_USER}/recommendations?limit=5")
    version = expected_version(experiment, FOLDIN_USER)
    assert body["source"] == "foldin" and body["model_version"] == version
    assert body["arm"] == arm(experiment, FOLDIN_USER)
    folded, _ = versions[version].foldin.recommend(np.array([4, 9]), np.array([2.0, 1.0]), 5, np.array([4, 9]))
    assert ids(body) == folded.tolist()

    # similar films: the arm's lists when the user is named, the served version's otherwise
    for user_id in (1, 2, 3, 4, 5, 6):
        version = expected_version(experiment, user_id)
        body = await get_json(client, f"/v1/films/3/similar?limit=5&user_id={user_id}")
        stored, _ = keys.decode_ranked(conn.get(keys.similar(version, 3)))
        assert body["model_version"] == version and body["arm"] == arm(experiment, user_id)
        assert ids(body) == stored[:5]
    anonymous = await get_json(client, "/v1/films/3/similar?limit=5")
    assert anonymous["model_version"] == "v1" and "experiment" not in anonymous


async def test_starting_and_stopping_mid_traffic_needs_no_restart_and_no_answer_is_mixed(
    client: TestClient, conn: redis.Redis, versions: dict[str, Published]
) -> None:
    """Traffic runs while the experiment starts, its share changes (a new experiment) and it stops:
    every answer is whole: either no experiment and v1's list, or the arm's version and list."""
    experiments = {e.id: e for e in (running("exp-on", 0.5), running("exp-again", 0.2))}
    answers: list[dict] = []
    stop = asyncio.Event()

    async def traffic() -> None:
        user = 0
        while not stop.is_set():
            user = user % len(USERS) + 1
            answers.append(await get_json(client, f"/v1/users/{user}/recommendations?limit=10"))

    load = asyncio.create_task(traffic())
    try:
        for experiment in experiments.values():
            store.mirror(conn, experiment)
            await until(client, lambda body, e=experiment: body.get("experiment") == e.id)
        conn.delete(keys.EXPERIMENT_ACTIVE)
        await until(client, lambda body: "experiment" not in body)
    finally:
        stop.set()
        await load
    phases = set()
    for body in answers:
        experiment = experiments.get(body.get("experiment"))
        phases.add(body.get("experiment"))
        if experiment is not None:
            assert body["arm"] == arm(experiment, body["user_id"])
        version = expected_version(experiment, body["user_id"])
        assert body["model_version"] == version, body
        assert ids(body) == versions[version].user_recs[body["user_id"]]
    assert phases >= {"exp-on", "exp-again"}


async def test_an_unreadable_mirror_keeps_the_previous_routing(
    client: TestClient, conn: redis.Redis, versions: dict[str, Published]
) -> None:
    experiment = running()
    store.mirror(conn, experiment)
    await until(client, lambda body: body.get("experiment") == experiment.id)
    conn.set(keys.EXPERIMENT_ACTIVE, b'{"id": "half-written"')
    assert await client.app[READER].cache.refresh()
    body = await get_json(client, "/v1/users/7/recommendations")
    assert body["experiment"] == experiment.id and body["model_version"] == expected_version(experiment, 7)
