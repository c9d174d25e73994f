"""Property-based API test: schemathesis generates valid and invalid requests from
`/openapi.json` (app.web.openapi.SPEC) against a real `cinerec serve` process
with a published model, over a ClickHouse database of its own (the experiment
routes write to it); no request may get a 5xx and every response must match
the documented status codes and schemas. Analytics cases send the analytics
token, admin cases the admin token."""
from __future__ import annotations

from typing import Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings, strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance
from schemathesis.config._auth import OpenAPIAuthConfig

from app.web.openapi import SPEC
from app.storage.clickhouse import client, migrate
from tests.conftest import BASE, require_service, unique
from app.web.handlers import EXPLAIN
from tests.integration.web_ranking_support import WARM_USERS, fit_two_level, newcomer, publish_two_level
from tests.integration.web_support import publish_version, serve_process, set_trending, sync_redis

pytestmark = [pytest.mark.integration, pytest.mark.redis_db(12)]

REDIS_DB = 12
ANALYTICS = ("/v1/analytics/summary", "/v1/analytics/dashboard", "/v1/analytics/experiment")
EXPERIMENTS = tuple(path for path in SPEC["paths"] if path.startswith("/v1/admin/experiments"))
NEWCOMERS = tuple(range(900_001, 900_006))  # recent plays, no list: ranked at request time
COLD = (424_242, 7)
TOKEN = "fuzz-token"
ADMIN_TOKEN = "fuzz-admin-token"

schema = schemathesis.openapi.from_dict(SPEC)
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
# The analytics token for the `bearer` security scheme, the admin token for `admin` (retrain, experiments).
schema.config.auth.openapi = OpenAPIAuthConfig(schemes={"bearer": {"bearer": TOKEN}, "admin": {"bearer": ADMIN_TOKEN}})


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`cinerec serve` on a free port over Redis db 12 holding a published single-model version, a
    served two-level version (NEWCOMERS have recent plays and live counts) and a fresh ClickHouse
    database (analytics behind ANALYTICS_TOKEN, admin behind ADMIN_TOKEN)."""
    require_service("redis")
    require_service("clickhouse")
    database = unique("cinerec_fuzz")
    settings = BASE.with_redis_db(REDIS_DB, admin_token=ADMIN_TOKEN, analytics_token=TOKEN)
    settings = settings.with_clickhouse_database(database, celery_broker_url=settings.redis_url)
    migrate(settings)
    conn = sync_redis(settings)
    conn.flushdb()
    publish_version(conn, "v1", seed=5)
    publish_two_level(conn, "v2", fit_two_level())
    for i, user in enumerate(NEWCOMERS):
        newcomer(conn, user, [1000 + 25 * (i % 4) + k for k in (2, 1, 0)],
                 {"events": 3 + i, "ratings": i, "rating_sum": 3.5 * i, "last_seen": 1.6e9 + 31 * 86_400})
    set_trending(conn, [1003, 1004, 1005])
    try:
        with serve_process(settings, tmp_path_factory.mktemp("serve") / "serve.log") as url:
            yield url
    finally:
        conn.flushdb()
        conn.close()
        ch = client(settings, database="default")
        ch.execute(f"DROP DATABASE IF EXISTS {database}")
        ch.disconnect()


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_never_answers_5xx_and_matches_its_schema(case: schemathesis.Case, server_url: str) -> None:
    if case.operation.path == "/ready":
        require_service("kafka")
    excluded = []
    if case.operation.path in ANALYTICS:
        # A schema cannot say "from <= to" or "at most N days": such ranges are
        # valid to the schema and rightly answered 400 (checked below anyway).
        excluded.append(positive_data_acceptance)
    if case.operation.path in EXPERIMENTS:
        # Nor "a published version", "an existing experiment", "not in the future" or "each guardrail
        # once": schema-valid requests rightly get 404/409/400 (each documented, and checked anyway).
        excluded.append(positive_data_acceptance)
    case.call_and_validate(base_url=server_url, timeout=30, excluded_checks=excluded)


def test_documented_paths_are_served(server_url: str) -> None:
    for path, operations in SPEC["paths"].items():
        if "get" in operations and "{" not in path:
            response = requests.get(server_url + path, timeout=10)
            assert str(response.status_code) in operations["get"]["responses"], (path, response.status_code)


@given(user=st.sampled_from([*NEWCOMERS, *WARM_USERS.tolist(), *COLD]), limit=st.integers(1, 100),
       explain=st.one_of(st.none(), st.sampled_from(sorted(EXPLAIN)), st.text(max_size=8)))
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_explain_is_a_flag_on_every_stage_and_anything_else_a_400(server_url: str, user: int, limit: int,
                                                                    explain: str | None) -> None:
    params = {"limit": limit, **({} if explain is None else {"explain": explain})}
    response = requests.get(f"{server_url}/v1/users/{user}/recommendations", params=params, timeout=30)
    if explain is not None and explain not in EXPLAIN:
        assert response.status_code == 400 and "explain must be one of" in response.json()["error"]
        return
    assert response.status_code == 200, response.text
    body = response.json()
    if body.get("degraded"):  # a Redis read past its budget on a loaded machine: popular, legitimately
        assert body["stage"] == "popular"
        return
    stage = "request-time" if user in NEWCOMERS else "precomputed" if user in WARM_USERS else "popular"
    if stage == "popular" and body["stage"] == "trending":
        stage = "trending"
    assert (body["stage"], body["model"], body["model_version"]) == (stage, "two-level", "v2")
    assert 0 < len(body["items"]) <= limit
    explained = EXPLAIN.get(explain or "0")
    assert all(("reasons" in item) == explained for item in body["items"])
    if explained and stage == "request-time":
        assert any(reason["value"] for item in body["items"] for reason in item["reasons"])
