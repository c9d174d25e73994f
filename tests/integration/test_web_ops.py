"""Operations side of the API against real services: readiness, admin retrain,
and serving through a Redis outage (a throwaway redis-server we stop)."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import AsyncIterator, Iterator

import pytest
from aiohttp.test_utils import TestClient

from app.localstack.redis import Redis as LocalRedis
from app.settings import Settings
from app.web import admin
from app.worker_process import free_port
from tests.conftest import require_service
from app.web.keys import READER
from tests.integration.web_support import Published, publish_version, running_client, sync_redis

pytestmark = [pytest.mark.integration, pytest.mark.redis_db(12)]

TOKEN = "s3cret-token"


async def status_and_body(client: TestClient, method: str, path: str, **kwargs: object) -> tuple[int, dict]:
    response = await client.request(method, path, **kwargs)
    return response.status, await response.json()


@pytest.fixture
def published(redis_settings: Settings) -> Published:
    return publish_version(sync_redis(redis_settings), "v1", seed=3)


@pytest.fixture
async def client(redis_settings: Settings, published: Published) -> AsyncIterator[TestClient]:
    # The Celery broker is the same flushed test db: enqueued messages are inspected, then dropped.
    settings = redis_settings.with_overrides(admin_token=TOKEN, celery_broker_url=redis_settings.redis_url)
    async for client in running_client(settings):
        yield client


async def test_ready_when_every_backend_answers_and_a_model_is_published(client: TestClient) -> None:
    require_service("kafka")
    require_service("clickhouse")
    status, body = await status_and_body(client, "GET", "/ready")
    assert status == 200, body
    assert body["ready"] is True
    assert set(body["checks"]) == {"kafka", "clickhouse", "redis", "model"}
    assert "v1" in body["checks"]["model"]["detail"]


async def test_not_ready_without_a_model(redis_settings: Settings) -> None:
    async for client in running_client(redis_settings):
        status, body = await status_and_body(client, "GET", "/ready")
    assert status == 503
    assert body["checks"]["model"]["ok"] is False
    assert body["checks"]["redis"]["ok"] is True


async def test_not_ready_names_an_unreachable_kafka(redis_settings: Settings, published: Published) -> None:
    settings = redis_settings.with_overrides(kafka_broker=f"kafka://127.0.0.1:{free_port()}")
    async for client in running_client(settings):
        status, body = await status_and_body(client, "GET", "/ready")
    assert status == 503
    assert body["checks"]["kafka"]["ok"] is False
    assert body["checks"]["redis"]["ok"] is True and body["checks"]["model"]["ok"] is True


async def test_retrain_needs_the_admin_token(client: TestClient, redis_settings: Settings) -> None:
    status, body = await status_and_body(client, "POST", "/v1/admin/retrain")
    assert status == 401 and "bearer" in body["error"] and body["auth"] == "missing"
    status, body = await status_and_body(client, "POST", "/v1/admin/retrain", headers={"Authorization": "Bearer nope"})
    assert status == 403
    assert sync_redis(redis_settings).llen(admin.RETRAIN_QUEUE) == 0


async def test_retrain_enqueues_the_celery_task(client: TestClient, redis_settings: Settings) -> None:
    status, body = await status_and_body(
        client, "POST", "/v1/admin/retrain", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert status == 202, body
    queued = sync_redis(redis_settings).lrange(admin.RETRAIN_QUEUE, 0, -1)
    assert len(queued) == 1
    assert admin.RETRAIN_TASK.encode() in queued[0] and body["task_id"].encode() in queued[0]


async def test_retrain_is_403_without_admin_token_and_503_without_broker(
    redis_settings: Settings, published: Published
) -> None:
    async for client in running_client(redis_settings.with_overrides(admin_token="")):
        status, body = await status_and_body(client, "POST", "/v1/admin/retrain", headers={"Authorization": "Bearer x"})
    assert status == 403 and body["auth"] == "unconfigured" and "ADMIN_TOKEN" in body["error"]
    dead_broker = f"redis://127.0.0.1:{free_port()}/0"
    settings = redis_settings.with_overrides(admin_token=TOKEN, celery_broker_url=dead_broker)
    async for client in running_client(settings):
        status, body = await status_and_body(
            client, "POST", "/v1/admin/retrain", headers={"Authorization": f"Bearer {TOKEN}"}
        )
    assert status == 503 and "broker" in body["error"]


@pytest.fixture
def throwaway_redis(tmp_path: Path) -> Iterator[LocalRedis]:
    """A redis-server of this test alone (own port and dir), so the test can stop it."""
    base = Settings.from_env()  # REDIS_URL may name another server (external): this one is ours to start
    settings = base.with_overrides(
        redis_url=f"redis://127.0.0.1:{free_port()}/0", local_dir=tmp_path, external=base.external - {"redis"}
    )
    server = LocalRedis(settings)
    server.up()
    yield server
    server.down()


async def test_redis_down_answers_degraded_from_the_in_process_popular_list(throwaway_redis: LocalRedis) -> None:
    settings = throwaway_redis.settings
    conn = sync_redis(settings)
    published = publish_version(conn, "v1", seed=4)
    conn.close()
    async for client in running_client(settings):
        status, body = await status_and_body(client, "GET", "/v1/users/1/recommendations?limit=5")
        assert status == 200 and "degraded" not in body
        lists = client.app[READER].cache.snapshot.lists
        for _ in range(600):  # the version's lists come into memory in the background
            if lists.similar is not None:
                break
            await asyncio.sleep(0.05)
        assert lists.similar is not None, "v1's similar lists never came into memory"
        _, similar_before = await status_and_body(client, "GET", "/v1/films/2/similar?limit=3")
        throwaway_redis.down()
        for path in ("/v1/users/1/recommendations?limit=5", "/v1/users/424242/recommendations?limit=5"):
            status, body = await status_and_body(client, "GET", path)
            assert status == 200, body
            assert body["degraded"] is True
            assert body["source"] == "popular"
            assert [item["film_id"] for item in body["items"]] == published.popular[:5]
        status, body = await status_and_body(client, "GET", "/v1/films/2/similar?limit=3")
        assert status == 200 and body == similar_before  # in memory: whole, Redis or not
        status, body = await status_and_body(client, "GET", "/ready")
        assert status == 503
        assert body["checks"]["redis"]["ok"] is False and body["ready"] is False
        throwaway_redis.up()  # empty again (no persistence): republish, as the trainer would
        publish_version(sync_redis(settings), "v1", seed=4)
        for _ in range(100):  # breaker and poller let Redis back in within ~1 s
            status, body = await status_and_body(client, "GET", "/v1/users/1/recommendations?limit=5")
            if "degraded" not in body:
                break
            await asyncio.sleep(0.1)
        assert status == 200 and "degraded" not in body and body["source"] == "als"
