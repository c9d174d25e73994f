"""The business metrics end to end: simulated traffic in a test ClickHouse
database, read through the real aiohttp app (`/v1/analytics/...`) and the
`cinerec report` command. Expected numbers are recounted here in plain Python
from the same events, independently of the SQL."""
from __future__ import annotations

import os
import subprocess
import sys
from collections import defaultdict
from datetime import date, datetime, timezone
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from app.events import Event
from app.settings import Settings
from app.storage.clickhouse import client as client_of
from app.storage.interactions import insert_events
from app.worker_process import free_port
from tests.app.analytics.test_queries import reference as attribution
from tests.integration.analytics_support import TOKEN, events, http, loaded  # noqa: F401 (fixtures)
from tests.integration.web_support import running_client

pytestmark = [pytest.mark.integration, pytest.mark.redis_db(13)]

FIRST, LAST = date(2026, 3, 5), date(2026, 3, 15)
RANGE = {"from": FIRST.isoformat(), "to": LAST.isoformat()}


def day_of(event: Event) -> date:
    return datetime.fromtimestamp(int(event.ts), tz=timezone.utc).date()  # ClickHouse stores whole seconds


def recount(events: list[Event]) -> dict[str, float]:
    """The headline numbers of RANGE, by the definitions in app/analytics/queries.py."""
    inside = [e for e in events if FIRST <= day_of(e) <= LAST]
    sessions: dict[tuple, list[int]] = defaultdict(list)
    for e in inside:
        sessions[(day_of(e), e.user_id, e.session_id)].append(int(e.ts))
    per_user_day: dict[tuple, int] = defaultdict(int)
    for (day, user, session), stamps in sessions.items():
        per_user_day[(day, user)] += (max(stamps) - min(stamps)) if session else 0
    kinds = defaultdict(list)
    for e in inside:
        kinds[e.event_type].append(e)
    ratings = [e.rating for e in kinds["rate"]]
    return {
        "active_users": len({e.user_id for e in inside}),
        "active_user_days": len(per_user_day),
        "avg_time_on_site_s": sum(per_user_day.values()) / len(per_user_day),
        "impressions": len(kinds["impression"]),
        # attributed clicks only (app/analytics/queries.py), read by the plain-Python rule
        "clicks": sum(clicks for _, clicks in attribution(kinds["impression"] + kinds["click"])[0].values()),
        "plays": len(kinds["play"]),
        "completes": len(kinds["complete"]),
        "avg_rating": sum(ratings) / len(ratings),
    }


async def test_summary_matches_a_python_recount_of_the_events(http: TestClient, events: list[Event]) -> None:
    expected = recount(events)
    assert expected["impressions"] > 0 and expected["clicks"] > 0 and expected["plays"] > 0  # the data exercises it
    assert expected["clicks"] <= expected["impressions"]

    response = await http.get("/v1/analytics/summary", params=RANGE)
    assert response.status == 200
    body = await response.json()

    assert (body["from"], body["to"]) == (RANGE["from"], RANGE["to"])
    t, e, f = body["time_on_site"], body["engagement"], body["funnel"]
    assert t["active_users"] == expected["active_users"]
    assert t["active_user_days"] == expected["active_user_days"]
    assert t["avg_time_on_site_s"] == pytest.approx(expected["avg_time_on_site_s"])
    assert (f["impressions"], f["clicks"]) == (expected["impressions"], expected["clicks"])
    assert f["ctr"] == pytest.approx(expected["clicks"] / expected["impressions"])
    assert (e["plays"], e["completes"]) == (expected["plays"], expected["completes"])
    assert e["avg_rating"] == pytest.approx(expected["avg_rating"], rel=1e-6)  # ratings are Float32 in ClickHouse
    assert {row["model_version"] for row in f["by_model_version"]} >= {"als-20260301", "als-20260311"}
    assert sum(row["impressions"] for row in f["by_model_version"]) == expected["impressions"]
    for k in ("d1", "d7", "d30"):
        assert 0.0 <= body["retention"][k]["rate"] <= 1.0


async def test_dashboard_data_has_a_row_per_day_and_the_model_runs(http: TestClient) -> None:
    response = await http.get("/v1/analytics/dashboard", params=RANGE)
    assert response.status == 200
    body = await response.json()

    days = [row["day"] for row in body["time_on_site"]["days"]]
    assert days[0] == RANGE["from"] and days[-1] == RANGE["to"] and len(days) == 11
    assert [row["day"] for row in body["engagement"]["days"]] == days
    assert [run["version"] for run in body["model_runs"]] == ["als-20260311"]  # the 03-01 run is before the range
    assert body["model_runs"][0]["metrics"]["ndcg@10"] == 0.22


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"from": "2026-03-15", "to": "2026-03-05"}, "'from' (2026-03-15) is after 'to' (2026-03-05)"),
        ({"from": "2026-3-5", "to": "2026-03-15"}, "'from' must be a date as YYYY-MM-DD"),
        ({"to": "2026-03-15"}, "'from' is required"),
        ({"from": "2026-03-05", "to": "2026-03-32"}, "'to' must be a date as YYYY-MM-DD"),
    ],
)
async def test_bad_ranges_are_a_400_saying_why(http: TestClient, params: dict[str, str], message: str) -> None:
    for path in ("/v1/analytics/summary", "/v1/analytics/dashboard"):
        response = await http.get(path, params=params)
        assert response.status == 400
        assert message in (await response.json())["error"]


async def test_a_range_without_events_is_zeros(http: TestClient) -> None:
    response = await http.get("/v1/analytics/summary", params={"from": "2025-01-01", "to": "2025-01-31"})
    assert response.status == 200
    body = await response.json()
    assert body["time_on_site"]["active_users"] == 0
    assert body["engagement"]["completion_rate"] == 0.0
    assert body["funnel"]["ctr"] == 0.0


async def test_dashboard_page_and_its_chart_library_are_served_locally(http: TestClient) -> None:
    page = await http.get("/dashboard")
    assert page.status == 200
    html = await page.text()
    assert '<script src="/static/vendor/chart-4.6.1.umd.min.js"></script>' in html
    library = await http.get("/static/vendor/chart-4.6.1.umd.min.js")
    assert library.status == 200
    assert "Chart.js v4.6.1" in (await library.text())[:200]
    assert (await http.get("/static/dashboard.js")).status == 200


async def test_clickhouse_down_is_a_503_naming_it(redis_settings: Settings) -> None:
    # a real connection to a port nothing listens on: the driver's refusal, not a stand-in
    settings = redis_settings.with_overrides(
        clickhouse_url=f"clickhouse://default@127.0.0.1:{free_port()}/cinerec", analytics_open=True
    )
    async for http_client in running_client(settings):
        response = await http_client.get("/v1/analytics/summary", params=RANGE)
        assert response.status == 503
        assert (await response.json())["error"].startswith("ClickHouse unavailable")


async def test_analytics_needs_a_token_unless_opened(loaded: Settings, redis_settings: Settings) -> None:
    base = loaded.with_overrides(redis_url=redis_settings.redis_url)
    async for client in running_client(base):  # no token configured: closed, and says how to open it
        for path in ("/v1/analytics/summary", "/v1/analytics/dashboard"):
            response = await client.get(path, params=RANGE, headers={"Authorization": "Bearer guess"})
            body = await response.json()
            assert response.status == 403 and body["auth"] == "unconfigured"
            assert "ANALYTICS_TOKEN" in body["error"] and "ANALYTICS_OPEN" in body["error"]
        page = await client.get("/dashboard")  # the page holds no figures: served, it asks for the token
        assert page.status == 200 and 'id="token"' in await page.text()
    async for client in running_client(base.with_overrides(analytics_token=TOKEN, admin_token="admin-tok")):
        response = await client.get("/v1/analytics/summary", params=RANGE)
        assert response.status == 401 and (await response.json())["auth"] == "missing"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        response = await client.get("/v1/analytics/summary", params=RANGE, headers={"Authorization": "Bearer nope"})
        assert response.status == 403 and (await response.json())["auth"] == "rejected"
        for token in (TOKEN, "admin-tok"):
            response = await client.get("/v1/analytics/summary", params=RANGE, headers={"Authorization": f"Bearer {token}"})
            assert response.status == 200
    async for client in running_client(base.with_overrides(analytics_open=True)):
        assert (await client.get("/v1/analytics/summary", params=RANGE)).status == 200


async def test_a_result_is_reused_for_the_cache_lifetime(loaded: Settings, redis_settings: Settings) -> None:
    noon = datetime(2026, 3, 6, 12, tzinfo=timezone.utc).timestamp()
    # 60 s: the second ask is answered from the cache (the new user is not counted yet);
    # 1 ms: the cache has expired by the second ask, which sees the new user
    for user, cache_s, newly_counted in ((900_001, 60.0, 0), (900_002, 0.001, 1)):
        settings = loaded.with_overrides(redis_url=redis_settings.redis_url, analytics_open=True, analytics_cache_s=cache_s)
        async for client in running_client(settings):
            before = await (await client.get("/v1/analytics/summary", params=RANGE)).json()
            conn = client_of(loaded)
            insert_events(conn, [Event(f"cache-test-{user}", user, 1, "page_view", noon)])
            conn.disconnect()
            after = await (await client.get("/v1/analytics/summary", params=RANGE)).json()
        assert after["time_on_site"]["active_users"] == before["time_on_site"]["active_users"] + newly_counted


def run_report(settings: Settings, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CLICKHOUSE_URL": settings.clickhouse_url}
    return subprocess.run(
        [str(Path(sys.executable).parent / "cinerec"), "report", *args],
        env=env, capture_output=True, text=True, timeout=120,
    )


def test_report_prints_the_summary_as_a_table(loaded: Settings, events: list[Event]) -> None:
    expected = recount(events)
    done = run_report(loaded, "--from", RANGE["from"], "--to", RANGE["to"])
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"cinerec business metrics, {RANGE['from']} .. {RANGE['to']} (UTC days)"
    active = next(line for line in lines if line.startswith("active users"))
    assert active.split()[-1] == str(expected["active_users"])
    assert any(line.startswith("als-20260311") for line in lines)


def test_report_refuses_a_reversed_range_with_exit_status_2(loaded: Settings) -> None:
    done = run_report(loaded, "--from", "2026-03-15", "--to", "2026-03-05")
    assert done.returncode == 2
    assert "'from' (2026-03-15) is after 'to' (2026-03-05)" in done.stderr
