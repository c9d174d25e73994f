"""Request-time two-level ranking through the real app against the real Redis (db 9).

A user that a two-level version never saw, with recent plays mirrored by the stats agent, is
ranked at request time by the version's `RequestRanker` (recs:{v}:ranking) over their live
counts: the same list as `RequestRanker.rank` of the same inputs, whether the version's lists
are in memory or read from Redis; `explain=1` gives the ranker's reasons; during an experiment
the arm's version decides; a version without a bundle keeps the fold-in path.
"""
from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import AsyncIterator

import numpy as np
import pytest
import redis
from aiohttp.test_utils import TestClient, TestServer

from app.experiments import store
from app.experiments.assignment import CHALLENGER, CONTROL, arm_of
from app.experiments.model import Experiment, State
from app.recsys.models.foldin import unpack_factors
from app.recsys.ranking.twolevel import TwoLevelRecommender
from app.settings import Settings
from app.storage import redis_keys as keys
from app.web.keys import READER
from app.web.server import create_web_app
from tests.integration.web_ranking_support import TwoLevelVersion, fit_two_level, newcomer, publish_two_level
from tests.integration.web_support import sync_redis, whole_json

pytestmark = [pytest.mark.integration, pytest.mark.redis_db(9)]

NOW = 1.6e9 + 40 * 86_400  # ten days after the planted history ends
NEWCOMER = 50_001
RECENT = [1052, 1051, 1050]  # films of taste group 2, newest first
COUNTS = {"events": 9, "ratings": 2, "rating_sum": 7.0, "last_seen": 1.6e9 + 31 * 86_400}
DEADLINE_S = 60.0


@pytest.fixture(scope="module")
def model() -> TwoLevelRecommender:
    return fit_two_level()


@pytest.fixture
def conn(redis_settings: Settings) -> redis.Redis:
    return sync_redis(redis_settings)


async def until(condition, what: str) -> None:  # noqa: ANN001 (a zero-argument predicate)
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def started(settings: Settings, stack_dir: Path, memory_mb: int) -> TestClient:
    """The real app with its clock at NOW; with memory, once the served version's lists are in memory."""
    app = create_web_app(settings.with_overrides(serve_memory_mb=memory_mb, local_dir=stack_dir))
    client = TestClient(TestServer(app))
    await client.start_server()
    reader = app[READER]
    reader.clock = lambda: NOW
    await until(lambda: reader.cache.snapshot.version is not None, "a served version")
    if memory_mb:
        await until(lambda: reader.cache.snapshot.lists.users is not None, "the lists in memory")
    return client


@pytest.fixture(params=[64, 0], ids=["lists-in-memory", "lists-from-redis"])
async def served(request: pytest.FixtureRequest, redis_settings: Settings, conn: redis.Redis,
                 model: TwoLevelRecommender, tmp_path: Path) -> AsyncIterator[tuple[TestClient, TwoLevelVersion]]:
    published = publish_two_level(conn, "v2l", model)
    newcomer(conn, NEWCOMER, RECENT, COUNTS)
    client = await started(redis_settings, tmp_path, request.param)
    try:
        yield client, published
    finally:
        await client.close()


def ids(body: dict) -> list[int]:
    return [item["film_id"] for item in body["items"]]


def scores(body: dict) -> list[float]:
    return [item["score"] for item in body["items"]]


async def test_a_newcomer_is_ranked_at_request_time_exactly_as_the_ranker_does(
        served: tuple[TestClient, TwoLevelVersion], conn: redis.Redis) -> None:
    client, published = served
    body = await whole_json(client, f"/v1/users/{NEWCOMER}/recommendations?limit=10")
    assert (body["source"], body["stage"], body["model"], body["model_version"]) == (
        "ranked", "request-time", "two-level", "v2l")
    expected = published.ranker.rank(RECENT, COUNTS, NOW, 10)
    assert ids(body) == expected.film_ids and not set(ids(body)) & set(RECENT)
    assert scores(body) == pytest.approx(expected.scores, rel=1e-6)
    assert all("reasons" not in item for item in body["items"])

    # the live counts are an input: others give the ranker's list for those others
    other = {"events": 1, "ratings": 1, "rating_sum": 1.0, "last_seen": NOW - 3_600}
    assert published.ranker.rank(RECENT, other, NOW, 10) != expected  # (the test can tell them apart)
    newcomer(conn, NEWCOMER, RECENT, other)
    body = await whole_json(client, f"/v1/users/{NEWCOMER}/recommendations?limit=10")
    changed = published.ranker.rank(RECENT, other, NOW, 10)
    assert ids(body) == changed.film_ids and scores(body) == pytest.approx(changed.scores, rel=1e-6)

    # no counts mirrored yet: unknown to the ranker, as in RequestRanker
    newcomer(conn, NEWCOMER, RECENT, None)
    body = await whole_json(client, f"/v1/users/{NEWCOMER}/recommendations?limit=7")
    assert ids(body) == published.ranker.rank(RECENT, None, NOW, 7).film_ids

    # a warm user: the precomputed two-level list
    warm = await whole_json(client, "/v1/users/2/recommendations?limit=10")
    assert (warm["source"], warm["stage"], warm["model"]) == ("als", "precomputed", "two-level")
    stored, _ = keys.decode_ranked(conn.get(keys.user_recs("v2l", 2)))
    assert ids(warm) == stored[:10]


async def test_explain_lists_the_rankers_reasons_per_film(served: tuple[TestClient, TwoLevelVersion]) -> None:
    client, published = served
    body = await whole_json(client, f"/v1/users/{NEWCOMER}/recommendations?limit=10&explain=1")
    expected = published.ranker.rank(RECENT, COUNTS, NOW, 10, explain=True)
    assert ids(body) == expected.film_ids
    assert [item["reasons"] for item in body["items"]] == [
        [{"name": r.name, "value": pytest.approx(r.value)} for r in reasons] for reasons in expected.reasons]
    names = set(published.ranker.ranker.features) | {f"source:{s}" for s in published.ranker.sources}
    assert all(r["name"] in names and r["value"] > 0 for item in body["items"] for r in item["reasons"])
    assert any(item["reasons"] for item in body["items"])
    same = await whole_json(client, f"/v1/users/{NEWCOMER}/recommendations?limit=10&explain=true")
    assert same == body
    off = await whole_json(client, f"/v1/users/{NEWCOMER}/recommendations?limit=10&explain=0")
    assert ids(off) == ids(body) and all("reasons" not in item for item in off["items"])

    # films not ranked at request time name the list they come from
    warm = await whole_json(client, "/v1/users/2/recommendations?limit=5&explain=1")
    assert [item["reasons"] for item in warm["items"]] == [[{"name": "list:precomputed", "value": None}]] * 5
    cold = await whole_json(client, "/v1/users/777777/recommendations?limit=3&explain=1")
    assert cold["stage"] == "popular" and all(item["reasons"] == [{"name": "list:popular", "value": None}]
                                              for item in cold["items"])

    for bad in ("2", "yes", "", "1 ", "TRUE", "１"):
        response = await client.get(f"/v1/users/{NEWCOMER}/recommendations", params={"explain": bad})
        assert response.status == 400, bad
        assert "explain must be one of" in (await response.json())["error"]


async def test_a_version_without_a_bundle_keeps_fold_in(redis_settings: Settings, conn: redis.Redis,
                                                        model: TwoLevelRecommender, tmp_path: Path) -> None:
    publish_two_level(conn, "v-single", model, with_bundle=False)
    newcomer(conn, NEWCOMER, RECENT, COUNTS)
    client = await started(redis_settings, tmp_path, 0)
    try:
        body = await whole_json(client, f"/v1/users/{NEWCOMER}/recommendations?limit=5&explain=1")
    finally:
        await client.close()
    assert (body["source"], body["stage"], body["model"]) == ("foldin", "fold-in", "als")
    foldin = unpack_factors(conn.get(keys.factors("v-single")))
    films = np.array(sorted(RECENT))
    folded, _ = foldin.recommend(films, np.ones(len(films)), 5, films)
    assert ids(body) == folded.tolist()
    assert all(item["reasons"] == [{"name": "list:fold-in", "value": None}] for item in body["items"])


async def test_during_an_experiment_the_arms_version_decides(redis_settings: Settings, conn: redis.Redis,
                                                             model: TwoLevelRecommender, tmp_path: Path) -> None:
    """Control: a single-model version (fold-in); challenger: the two-level version (request time)."""
    publish_two_level(conn, "v-single", model, with_bundle=False)
    two = publish_two_level(conn, "v2l", model, switch=False)
    at = datetime(2026, 12, 1, tzinfo=timezone.utc)
    experiment = Experiment("exp-webrank", control="v-single", challenger="v2l", share=0.5, created_at=at,
                            started_at=at, state=State.RUNNING)
    users = {}
    for user in range(NEWCOMER, NEWCOMER + 100):
        users.setdefault(arm_of(experiment.hash_seed, experiment.threshold, user), user)
    assert set(users) == {CONTROL, CHALLENGER}
    for user in users.values():
        newcomer(conn, user, RECENT, COUNTS)
    store.mirror(conn, experiment)
    client = await started(redis_settings, tmp_path, 64)
    try:
        await until(lambda: client.app[READER].cache.arms is not None, "the experiment")
        challenger = await whole_json(client, f"/v1/users/{users[CHALLENGER]}/recommendations?limit=10")
        control = await whole_json(client, f"/v1/users/{users[CONTROL]}/recommendations?limit=10")
    finally:
        await client.close()
    assert (challenger["arm"], challenger["model_version"], challenger["stage"], challenger["model"]) == (
        CHALLENGER, "v2l", "request-time", "two-level")
    assert ids(challenger) == two.ranker.rank(RECENT, COUNTS, NOW, 10).film_ids
    assert (control["arm"], control["model_version"], control["stage"], control["model"]) == (
        CONTROL, "v-single", "fold-in", "als")
