"""Live mode of the simulator against the real web app (Redis db 8), Kafka and ClickHouse."""
from __future__ import annotations

from typing import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient

from app.events import parse_event
from app.settings import Settings
from app.simulate import DAY_S, run
from app.simulator.live import LiveError
from tests.integration.ingest_support import read_topic
from tests.integration.simulate_support import pipeline_settings  # noqa: F401  (fixture)
from tests.integration.web_support import FILMS, WARM_USERS, Published, publish_version, running_client, sync_redis

pytestmark = [pytest.mark.integration, pytest.mark.redis_db(8)]


@pytest.fixture
def settings(pipeline_settings: Settings, redis_settings: Settings) -> Settings:
    return pipeline_settings.with_overrides(redis_url=redis_settings.redis_url)


@pytest.fixture
def published(settings: Settings) -> Published:
    return publish_version(sync_redis(settings), "v7", seed=3)


@pytest.fixture
async def client(settings: Settings, published: Published) -> AsyncIterator[TestClient]:
    async for client in running_client(settings):
        yield client


async def test_live_sessions_show_and_attribute_the_served_recommendations(
    settings: Settings, published: Published, client: TestClient
) -> None:
    # The simulated world's users and films are those of the published model.
    summary = await run(settings, users=len(WARM_USERS), films=len(FILMS), events=600, seed=2,
                        progress=False, service_url=str(client.make_url("")))
    assert summary.messages_sent == 600 and summary.failed_fetches == 0 and summary.live_sessions > 0

    events = [parse_event(r.value) for r in await read_topic(settings, settings.topic_interactions, 600)]
    assert len(events) == 600
    impressions = [e for e in events if e.event_type == "impression"]
    assert impressions and {e.model_version for e in impressions} == {"v7"}
    for e in impressions:
        assert published.user_recs[e.user_id][e.position] == e.film_id
    attributed = [e for e in events if e.event_type in ("click", "play") and e.model_version]
    assert attributed and all(published.user_recs[e.user_id][e.position] == e.film_id for e in attributed)


async def test_unreachable_service_stops_the_run_with_its_url(settings: Settings) -> None:
    with pytest.raises(LiveError, match="127.0.0.1:1/v1/users"):
        await run(settings, users=3, films=30, events=10, progress=False, service_url="http://127.0.0.1:1")


async def test_live_days_are_dated_in_past_days_and_attribute_the_served_recommendations(
    settings: Settings, published: Published, client: TestClient
) -> None:
    now = 1_772_323_200.0  # 2026-03-01: a fixed end makes the simulated days (and so the run) the same every time
    # three users visit on about a third of the days each: 20 days give a few dozen visits
    summary = await run(settings, users=len(WARM_USERS), films=len(FILMS), events=100_000, seed=5, progress=False,
                        service_url=str(client.make_url("")), live_days=20, end_ts=now)
    sent = summary.messages_sent
    assert sent > 100 and summary.failed_fetches == 0 and summary.live_sessions > 5

    events = [parse_event(r.value) for r in await read_topic(settings, settings.topic_interactions, sent)]
    assert len(events) == sent
    first_day = (now // DAY_S - 20) * DAY_S
    assert all(first_day <= e.ts < (now // DAY_S) * DAY_S for e in events)  # whole past days, none today
    impressions = [e for e in events if e.event_type == "impression"]
    assert impressions and all(published.user_recs[e.user_id][e.position] == e.film_id for e in impressions)
    assert {e.model_version for e in impressions} == {"v7"}


async def test_live_days_need_a_service(settings: Settings) -> None:
    with pytest.raises(ValueError, match="need a service"):
        await run(settings, users=3, films=30, events=10, progress=False, live_days=2)
