"""Shared fixtures. Integration fixtures talk to the real services started by
`make services`; when one is down the test fails with a message naming it (never a skip).

Isolation: each test gets its own ClickHouse database, its own Kafka topic
names and Faust app id, and a Redis database number chosen by the test module
(`redis_db` marker or `REDIS_TEST_DB` fallback), flushed before use.
"""
from __future__ import annotations

import asyncio
import socket
import uuid
from typing import Iterator
from urllib.parse import urlsplit

import pytest

from app.settings import Settings

BASE = Settings.from_env()


def _reachable(url: str, default_port: int, timeout: float = 2.0) -> tuple[str, int, bool]:
    parts = urlsplit(url if "://" in url else f"x://{url}")
    host, port = parts.hostname or "127.0.0.1", parts.port or default_port
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return host, port, True
    except OSError:
        return host, port, False


def require_service(name: str, settings: Settings = BASE) -> None:
    """Fail (not skip) with a readable message when a real service is not up."""
    url, port = {
        "kafka": (settings.kafka_broker.split(";")[0], 9092),
        "clickhouse": (settings.clickhouse_url, 9000),
        "redis": (settings.redis_url, 6379),
    }[name]
    host, port, ok = _reachable(url, port)
    if not ok:
        pytest.fail(
            f"{name} is not reachable at {host}:{port}; start it with `make services` "
            f"(or point the {name.upper()} setting at a running server)",
            pytrace=False,
        )


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def clickhouse_settings() -> Iterator[Settings]:
    """Settings pointing at a fresh, migrated ClickHouse database; dropped afterwards."""
    require_service("clickhouse")
    from app.storage.clickhouse import client, migrate

    database = unique("cinerec_test")
    settings = BASE.with_clickhouse_database(database)
    migrate(settings)
    yield settings
    conn = client(settings, database="default")
    conn.execute(f"DROP DATABASE IF EXISTS {database}")
    conn.disconnect()


def _redis_db(request: pytest.FixtureRequest) -> int:
    marker = request.node.get_closest_marker("redis_db")
    return int(marker.args[0]) if marker else 15


@pytest.fixture
def redis_settings(request: pytest.FixtureRequest) -> Iterator[Settings]:
    """Settings pointing at a flushed Redis database (number from the `redis_db` marker)."""
    require_service("redis")
    import redis

    settings = BASE.with_redis_db(_redis_db(request))
    conn = redis.Redis.from_url(settings.redis_url, socket_timeout=5)
    conn.flushdb()
    yield settings
    conn.flushdb()
    conn.close()


@pytest.fixture
def kafka_settings() -> Iterator[Settings]:
    """Settings with topic names and a Faust app id of their own; the topics are
    deleted afterwards (hundreds of leftover test partitions slow every broker start)."""
    require_service("kafka")
    suffix = uuid.uuid4().hex[:10]
    settings = BASE.with_overrides(
        topic_interactions=f"interactions-{suffix}",
        topic_dlq=f"interactions-dlq-{suffix}",
        app_id=f"cinerec-test-{suffix}",
    )
    yield settings
    from app.storage.kafka_admin import drop_topics

    asyncio.run(drop_topics(settings))


@pytest.fixture
def seeded_process_settings(
    clickhouse_settings: Settings, redis_settings: Settings, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Settings]:
    """Process settings (what a CLI command or Celery task reads) pointed at a test
    ClickHouse database seeded with planted-taste data, a test Redis db and a model dir."""
    from app.recsys.data.synthetic import PlantedTaste, seed
    from app.settings import get_settings

    seed(clickhouse_settings, PlantedTaste(users=200, films=100, events=8_000))
    monkeypatch.setenv("CLICKHOUSE_URL", clickhouse_settings.clickhouse_url)
    monkeypatch.setenv("REDIS_URL", redis_settings.redis_url)
    monkeypatch.setenv("MODEL_DIR", str(tmp_path / "models"))
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-screenshots", action="store_true",
                     help="write the browser tests' screenshots into docs/ (they go to the test's tmp dir otherwise)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "redis_db(n): Redis database number the test module uses")
