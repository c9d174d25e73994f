"""A simulated month of traffic in a test ClickHouse database, for the analytics
and dashboard tests: the real simulator's sessions, with the home row served by
two model versions (an A/B split by user id), plus two recorded model runs.

Test modules import the fixtures `events`, `loaded` and `http` from here."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import AsyncIterator, Iterator

import pytest
from aiohttp.test_utils import TestClient
from clickhouse_driver import Client

from app.events import Event
from app.settings import Settings
from app.simulate import generate
from app.storage.clickhouse import client
from app.storage.interactions import insert_events
from tests.integration.web_support import running_client

END = datetime(2026, 3, 21, tzinfo=timezone.utc)  # the simulated days are 2026-03-01 .. 2026-03-20
DAYS = 20
VERSIONS = ("als-20260301", "als-20260311")
TOKEN = "analytics-test-token"


def simulated_events(events: int = 4000, users: int = 80, films: int = 40, seed: int = 7) -> list[Event]:
    """Simulated sessions; impressions and clicks of the home row carry a model version by user parity."""
    _, history = generate(users=users, films=films, events=events, seed=seed, days=DAYS, end_ts=END.timestamp())
    out = []
    for event in history:
        if event.source and event.event_type in ("impression", "click"):
            event = event._replace(model_version=VERSIONS[event.user_id % 2])
        out.append(event)
    return out


def load(conn: Client, events: list[Event]) -> None:
    """Insert the events (twice: a re-delivered batch must not change any metric) and two model runs."""
    insert_events(conn, events)
    insert_events(conn, events[: len(events) // 3])
    conn.execute(
        "INSERT INTO model_runs (version, started_at, finished_at, backend, status, published, reason,"
        " n_users, n_items, n_interactions, metrics, baseline_metrics) VALUES",
        [
            (VERSIONS[0], datetime(2026, 3, 1, 3), datetime(2026, 3, 1, 3, 4), "implicit", "ok", 1, "",
             60, 40, 2100, '{"ndcg@10": 0.18, "recall@10": 0.25}', '{"ndcg@10": 0.11, "recall@10": 0.16}'),
            (VERSIONS[1], datetime(2026, 3, 11, 3), datetime(2026, 3, 11, 3, 5), "implicit", "ok", 1, "",
             75, 40, 3300, '{"ndcg@10": 0.22, "recall@10": 0.3}', '{"ndcg@10": 0.12, "recall@10": 0.17}'),
        ],
    )


@pytest.fixture(scope="module")
def events() -> list[Event]:
    return simulated_events()


@pytest.fixture
def loaded(clickhouse_settings: Settings, events: list[Event]) -> Iterator[Settings]:
    """Settings of a fresh ClickHouse database holding the simulated month."""
    conn = client(clickhouse_settings)
    load(conn, events)
    conn.disconnect()
    yield clickhouse_settings


@pytest.fixture
async def http(loaded: Settings, redis_settings: Settings) -> AsyncIterator[TestClient]:
    """The real web app (same factory as `cinerec serve`) over that database, with
    ANALYTICS_TOKEN set; the client sends it on every request."""
    settings = loaded.with_overrides(redis_url=redis_settings.redis_url, analytics_token=TOKEN)
    async for test_client in running_client(settings, token=TOKEN):
        yield test_client
