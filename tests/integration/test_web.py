"""The recommendation API through the real app against the real Redis (db 12)."""
from __future__ import annotations

import asyncio
from typing import AsyncIterator

import numpy as np
import pytest
import redis
from aiohttp.test_utils import TestClient

from app.settings import Settings
from app.storage import redis_keys as keys
from app.web.keys import READER
from tests.integration.web_support import (
    FILMS,
    UNTITLED_FILM,
    Published,
    publish_version,
    running_client,
    set_trending,
    sync_redis,
    watched,
)

pytestmark = [pytest.mark.integration, pytest.mark.redis_db(12)]

TRENDING = [25, 26, 27]


@pytest.fixture
def conn(redis_settings: Settings) -> redis.Redis:
    return sync_redis(redis_settings)


@pytest.fixture
def published(conn: redis.Redis) -> Published:
    version = publish_version(conn, "v1", seed=1)
    set_trending(conn, TRENDING)
    return version


@pytest.fixture
async def client(redis_settings: Settings, published: Published) -> AsyncIterator[TestClient]:
    async for client in running_client(redis_settings):
        yield client


async def get_json(client: TestClient, path: str, status: int = 200) -> dict:
    response = await client.get(path)
    body = await response.json()
    assert response.status == status, body
    return body


def ids(body: dict) -> list[int]:
    return [item["film_id"] for item in body["items"]]


async def test_warm_user_gets_the_published_list_with_titles(client: TestClient, published: Published) -> None:
    body = await get_json(client, "/v1/users/1/recommendations?limit=10")
    assert body["user_id"] == 1
    assert body["source"] == "als"
    assert body["model_version"] == "v1"
    assert "degraded" not in body
    assert ids(body) == published.user_recs[1]
    for item in body["items"]:
        expected = None if item["film_id"] == UNTITLED_FILM else f"Film {item['film_id']}"
        assert item["title"] == expected
    scores = [item["score"] for item in body["items"]]
    assert scores == sorted(scores, reverse=True)


async def test_limit_cuts_the_list(client: TestClient, published: Published) -> None:
    body = await get_json(client, "/v1/users/2/recommendations?limit=3")
    assert ids(body) == published.user_recs[2][:3]


async def test_recent_watches_are_filtered_and_the_list_padded(
    client: TestClient, conn: redis.Redis, published: Published
) -> None:
    seen = published.user_recs[1][1:3]
    watched(conn, 1, seen)
    body = await get_json(client, "/v1/users/1/recommendations?limit=10")
    assert body["source"] == "als"
    remaining = [f for f in published.user_recs[1] if f not in seen]
    padding = [f for f in TRENDING + published.popular if f not in seen and f not in remaining]
    assert ids(body) == (remaining + padding)[:10]
    assert not set(ids(body)) & set(seen)


async def test_unknown_user_with_recent_events_gets_foldin(
    client: TestClient, conn: redis.Redis, published: Published
) -> None:
    watched(conn, 500, [4, 9, 4])
    body = await get_json(client, "/v1/users/500/recommendations?limit=5")
    assert body["source"] == "foldin"
    expected, _ = published.foldin.recommend(np.array([4, 9]), np.array([2.0, 1.0]), 5, np.array([4, 9]))
    assert ids(body) == expected.tolist()
    assert not {4, 9} & set(ids(body))


async def test_user_without_history_gets_trending_then_popular(
    client: TestClient, conn: redis.Redis, published: Published
) -> None:
    body = await get_json(client, "/v1/users/777/recommendations?limit=5")
    assert body["source"] == "trending"
    assert ids(body) == (TRENDING + [f for f in published.popular if f not in TRENDING])[:5]

    conn.delete(keys.TRENDING)
    await client.app[READER].cache.refresh()
    body = await get_json(client, "/v1/users/777/recommendations?limit=5")
    assert body["source"] == "popular"
    assert ids(body) == published.popular[:5]


async def test_pointer_switch_reloads_lists_and_factors_without_restart(
    client: TestClient, conn: redis.Redis, published: Published
) -> None:
    watched(conn, 600, [7, 8])
    folded = (np.array([7, 8]), np.array([1.0, 1.0]), 5, np.array([7, 8]))
    before = await get_json(client, "/v1/users/600/recommendations?limit=5")
    assert ids(before) == published.foldin.recommend(*folded)[0].tolist()
    v2 = publish_version(conn, "v2", seed=2)
    expected = v2.foldin.recommend(*folded)[0].tolist()
    assert expected != ids(before)  # the test data makes a factor reload visible
    for _ in range(100):  # the background poller picks the pointer up within ~1 s
        body = await get_json(client, "/v1/users/1/recommendations?limit=10")
        if body["model_version"] == "v2":
            break
        await asyncio.sleep(0.1)
    assert body["model_version"] == "v2"
    assert ids(body) == v2.user_recs[1]
    after = await get_json(client, "/v1/users/600/recommendations?limit=5")
    assert after["source"] == "foldin" and after["model_version"] == "v2"
    assert ids(after) == expected
    model = await get_json(client, "/v1/models/current")
    assert model["version"] == "v2" and model["metrics"] == v2.meta["metrics"]


async def test_similar_films(client: TestClient, published: Published) -> None:
    body = await get_json(client, "/v1/films/3/similar?limit=4")
    factors = published.foldin.item_factors
    row = int(np.flatnonzero(FILMS == 3)[0])
    sim = factors @ factors[row]
    sim[row] = -np.inf
    assert ids(body) == FILMS[np.argsort(-sim)[:4]].tolist()
    assert body["film_id"] == 3 and 3 not in ids(body)


async def test_unknown_film_is_404(client: TestClient) -> None:
    body = await get_json(client, "/v1/films/999999/similar", status=404)
    assert "999999" in body["error"]


async def test_popular_trending_and_model_endpoints(client: TestClient, published: Published) -> None:
    assert ids(await get_json(client, "/v1/films/popular?limit=7")) == published.popular[:7]
    assert ids(await get_json(client, "/v1/films/trending")) == TRENDING
    model = await get_json(client, "/v1/models/current")
    assert model["version"] == "v1"
    assert model["trained_at"] == published.meta["trained_at"]
    assert model["metrics"] == published.meta["metrics"]


@pytest.mark.parametrize(
    "path",
    [
        "/v1/users/abc/recommendations",
        "/v1/users/0/recommendations",
        "/v1/users/-3/recommendations",
        "/v1/users/1.5/recommendations",
        "/v1/users/99999999999999999999999/recommendations",
        "/v1/users/1/recommendations?limit=0",
        "/v1/users/1/recommendations?limit=101",
        "/v1/users/1/recommendations?limit=ten",
        "/v1/users/1/recommendations?limit=%C2%B2",
        "/v1/films/x/similar",
        "/v1/films/3/similar?limit=-1",
        "/v1/films/popular?limit=1000",
        "/v1/films/trending?limit=",
    ],
)
async def test_bad_input_is_400_with_a_reason(client: TestClient, path: str) -> None:
    body = await get_json(client, path, status=400)
    assert "must be" in body["error"]


@pytest.mark.parametrize(
    "path",
    [
        "/v1/users/" + "1" * 5000 + "/recommendations",
        "/v1/users/1/recommendations?limit=" + "9" * 5000,
        "/v1/films/" + "x" * 5000 + "/similar",
        "/v1/films/popular?limit=" + "%00" * 2000,
    ],
)
async def test_an_error_echoes_at_most_about_100_characters_of_the_input(client: TestClient, path: str) -> None:
    body = await get_json(client, path, status=400)
    assert len(body["error"]) < 200, body["error"]
    assert "characters)" in body["error"]  # says how long the value was


async def test_metrics_carry_no_per_user_or_business_series(client: TestClient) -> None:
    """/metrics stays open (README "Security"): only operational series, no ids, no business figures."""
    await get_json(client, "/v1/users/1/recommendations")
    text = await (await client.get("/metrics")).text()
    families = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    assert families and all(name.startswith(("cinerec_", "python_", "process_")) for name in families)
    business = ("retention", "rating", "ctr", "time_on_site", "completion", "active_users", "revenue")
    assert not [name for name in families if any(word in name for word in business)]
    assert "user_id=" not in text and "film_id=" not in text


async def test_metrics_use_route_templates_and_show_the_served_version(client: TestClient) -> None:
    await get_json(client, "/v1/users/1/recommendations")
    await get_json(client, "/v1/users/abc/recommendations", status=400)
    response = await client.get("/metrics")
    text = await response.text()
    assert response.status == 200
    assert 'route="/v1/users/{user_id}/recommendations",status="200"' in text
    assert 'route="/v1/users/{user_id}/recommendations",status="400"' in text
    assert "/v1/users/1/" not in text
    assert 'cinerec_served_model_info{version="v1"} 1.0' in text
    assert 'cinerec_http_request_duration_seconds_bucket{le="0.001",route="/v1/users/{user_id}/recommendations"}' in text


async def test_health_and_openapi(client: TestClient) -> None:
    assert (await get_json(client, "/health"))["status"] == "ok"
    spec = await get_json(client, "/openapi.json")
    assert set(spec["paths"]) >= {"/v1/users/{user_id}/recommendations", "/ready", "/v1/admin/retrain"}
