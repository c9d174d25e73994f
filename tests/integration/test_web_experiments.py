"""`/v1/admin/experiments` and `/v1/analytics/experiment` through the real app, against the real
ClickHouse (a fresh database holding the hand-made events of test_analysis) and Redis (db 6)."""
from __future__ import annotations

from typing import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient

from app.settings import Settings
from app.storage.clickhouse import client
from app.storage.interactions import insert_events
from tests.app.experiments.test_analysis import hand_made_events
from tests.integration.web_support import publish_version, running_client, sync_redis

pytestmark = [pytest.mark.integration, pytest.mark.redis_db(6)]

ADMIN, ANALYST = "admin-secret", "analyst-secret"
# the arms of test_analysis: "exp-hand" at 50 % puts users 1 and 3 in control, 2, 4 and 5 in the challenger
START = {"challenger": "v2", "share": 0.5, "id": "exp-hand", "at": "2026-03-01T00:00:00Z", "max_days": 9,
         "min_users_per_arm": 1, "guardrails": [{"metric": "ctr", "tolerance": 0.1}]}


@pytest.fixture
def settings(clickhouse_settings: Settings, redis_settings: Settings) -> Settings:
    conn = client(clickhouse_settings)
    insert_events(conn, hand_made_events())
    conn.disconnect()
    r = sync_redis(redis_settings)
    publish_version(r, "v2", seed=2)
    publish_version(r, "v1", seed=1)  # served
    r.close()
    return clickhouse_settings.with_overrides(redis_url=redis_settings.redis_url, admin_token=ADMIN,
                                              analytics_token=ANALYST)


@pytest.fixture
async def admin(settings: Settings) -> AsyncIterator[TestClient]:
    async for test_client in running_client(settings, token=ADMIN):
        yield test_client


async def call(http: TestClient, method: str, path: str, status: int, **kwargs: object) -> dict:
    response = await http.request(method, path, **kwargs)
    body = await response.json()
    assert response.status == status, body
    return body


async def test_start_look_stop_over_http(admin: TestClient) -> None:
    started = await call(admin, "POST", "/v1/admin/experiments", 201, json=START)
    e = started["experiment"]
    assert (e["id"], e["state"], e["control"], e["challenger"]) == ("exp-hand", "running", "v1", "v2")
    assert started["plan"] == "plan: 1 users per arm (given)"
    again = await call(admin, "POST", "/v1/admin/experiments", 201, json=START)  # a retried request
    assert again["experiment"] == e

    listed = await call(admin, "GET", "/v1/admin/experiments", 200)
    assert listed["active"] == "exp-hand" and [x["id"] for x in listed["experiments"]] == ["exp-hand"]
    details = await call(admin, "GET", "/v1/admin/experiments/exp-hand", 200)
    assert [d["action"] for d in details["decisions"]] == ["start"]
    assert details["report"]["arms"]["control"]["users"] == 2  # users 1 and 3 (test_analysis)

    other = dict(START, id="exp-other")
    clash = await call(admin, "POST", "/v1/admin/experiments", 409, json=other)
    assert "'exp-hand' is running" in clash["error"]

    stopped = await call(admin, "POST", "/v1/admin/experiments/exp-hand/stop", 200, json={"reason": "enough"})
    assert (stopped["experiment"]["state"], stopped["experiment"]["decision"]) == ("stopped", "stop: enough")
    ended = await call(admin, "POST", "/v1/admin/experiments/exp-hand/stop", 409)
    assert "only a planned or running experiment can be stopped" in ended["error"]
    assert (await call(admin, "GET", "/v1/admin/experiments", 200))["active"] is None


@pytest.mark.parametrize(
    "change, message",
    [
        ({"share": 1.5}, "'share' must be a number in (0, 1)"),
        ({"share": True}, "'share' must be a number"),
        ({"min_users_per_arm": None}, "'min_users_per_arm' must be an integer"),
        ({"guardrails": [{"metric": "joy", "tolerance": 0.1}]}, "unknown metric 'joy'"),
        ({"guardrails": [{"metric": "ctr"}]}, "each guardrail must be an object"),
        ({"primary": "ctr"}, "each guardrail must be a different metric"),
        ({"at": "yesterday"}, "'at' must be an RFC 3339 date-time"),
        ({"at": "2999-01-01T00:00:00Z"}, "not in the future"),
        ({"id": "no spaces"}, "experiment id must match"),
        ({"max_days": 0}, "'max_days' must be a number in (0, 366]"),
        ({"colour": "blue"}, "unknown field(s) 'colour'"),
        ({"challenger": ""}, "'challenger' must be a string of 1..200 characters"),
    ],
)
async def test_a_refused_definition_is_a_400_naming_the_field(admin: TestClient, change: dict, message: str) -> None:
    body = await call(admin, "POST", "/v1/admin/experiments", 400, json={**START, **change})
    assert message in body["error"]
    assert (await call(admin, "GET", "/v1/admin/experiments", 200))["experiments"] == []  # nothing stored


async def test_unpublished_versions_unknown_ids_and_bodies_that_are_not_json(admin: TestClient) -> None:
    missing = await call(admin, "POST", "/v1/admin/experiments", 409, json={**START, "challenger": "v9"})
    assert "version 'v9' is not published" in missing["error"]
    assert (await call(admin, "GET", "/v1/admin/experiments", 200))["experiments"] == []  # nothing stored
    await call(admin, "GET", "/v1/admin/experiments/exp-nope", 404)
    await call(admin, "POST", "/v1/admin/experiments/exp-nope/stop", 404)
    await call(admin, "GET", "/v1/admin/experiments/bad%20id", 400)
    body = await call(admin, "POST", "/v1/admin/experiments", 400, data=b"{not json")
    assert body["error"] == "the body must be a JSON object"
    await call(admin, "POST", "/v1/admin/experiments", 400, data=b"[1, 2]")


async def test_admin_routes_need_the_admin_token(settings: Settings) -> None:
    async for analyst in running_client(settings, token=ANALYST):
        refused = await call(analyst, "GET", "/v1/admin/experiments", 403)
        assert refused["auth"] == "rejected"
        assert (await call(analyst, "GET", "/v1/analytics/experiment?from=2026-03-01&to=2026-03-20", 200))[
            "experiment"] is None  # analysts see the figures, not the controls
    async for anonymous in running_client(settings):
        assert (await call(anonymous, "POST", "/v1/admin/experiments", 401, json=START))["auth"] == "missing"


async def test_the_dashboard_section_shows_the_experiment_of_the_range(admin: TestClient) -> None:
    await call(admin, "POST", "/v1/admin/experiments", 201, json=START)
    data = await call(admin, "GET", "/v1/analytics/experiment?from=2026-03-01&to=2026-03-20", 200)
    assert data["experiment"]["id"] == "exp-hand" and data["report"]["verdict"]["text"]
    assert [d["action"] for d in data["decisions"]] == ["start"]
    # the per-arm days of test_queries (hand-made): control exposed on Mar 1 and 5, challenger on Mar 3 and 9
    exposed = {(row["day"], row["arm"]): row["exposed_users"] for row in data["daily"] if row["exposed_users"]}
    assert exposed == {("2026-03-01", "control"): 1, ("2026-03-03", "challenger"): 1,
                       ("2026-03-05", "control"): 1, ("2026-03-09", "challenger"): 1}
    assert sum(row["impressions"] for row in data["daily"]) == sum(
        arm["totals"]["impressions"] for arm in data["report"]["arms"].values())


async def test_clickhouse_down_is_a_503(settings: Settings) -> None:
    down = settings.with_overrides(clickhouse_url="clickhouse://default@127.0.0.1:1/nothing", network_timeout_s=1.0)
    async for http in running_client(down, token=ADMIN):
        body = await call(http, "GET", "/v1/admin/experiments", 503)
        assert body["error"].startswith("ClickHouse or Redis unavailable")
