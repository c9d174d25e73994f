"""What the public port of a real `cinerec worker` (and `cinerec serve`) gives away:
nothing private by default (README "Security").

- Faust's /table/... and /router/... views and our /debug/... views answer 404;
  analytics answers 403 saying how to configure a token; /health, /ready,
  /metrics and the dashboard page stay reachable.
- With DEBUG_VIEWS on, the debug views need the admin token: 401 without, 403
  with a wrong one, the worker's state with it.
- Unparsable requests (a request line or header over 8 KB, control bytes in a
  header) get a short JSON 400 and no ERROR traceback in the log.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import requests

from app.settings import Settings
from app.worker_process import WorkerProcess
from tests.integration.web_support import publish_version, raw_request, serve_process, sync_redis

pytestmark = [pytest.mark.integration, pytest.mark.redis_db(12), pytest.mark.slow]

ADMIN = "serving-port-admin-token"
PRIVATE_PATHS = (
    "/table/film-viewers/739:42/",  # would confirm that user 42 watched film 739
    "/table/user-stats/",
    "/router/nonexistent/",
    "/router/user-stats/get/",
    "/debug/partitions/",
    "/debug/user-stats/42/",
)
MALFORMED = (
    b"GET /v1/users/" + b"1" * 10_000 + b"/recommendations HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 10_000 + b"\r\nConnection: close\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost: x\r\nX-Bad\x01: " + b"b" * 3_000 + b"\r\nConnection: close\r\n\r\n",
)


@pytest.fixture
def settings(kafka_settings: Settings, redis_settings: Settings, tmp_path: Path) -> Settings:
    publish_version(sync_redis(redis_settings), "v1", seed=8)
    return kafka_settings.with_overrides(redis_url=redis_settings.redis_url, local_dir=tmp_path)


def get(url: str, token: str | None = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(url, headers=headers, timeout=10)


def assert_malformed_requests_are_short_json_400s(url: str, logfile: Path) -> None:
    logged_before = logfile.stat().st_size
    for data in MALFORMED:
        status, body = raw_request(url, data)
        assert status == 400, body[:200]
        assert body.startswith(b'{"error":"malformed HTTP request: ') and len(body) < 200, body[:300]
        assert b"aaaa" not in body and b"bbbb" not in body and b"1111" not in body
    assert get(f"{url}/health").status_code == 200  # the server lives on
    with open(logfile, "rb") as log:
        log.seek(logged_before)
        since = log.read().decode(errors="replace")
    assert since.count("rejected a malformed HTTP request") == len(MALFORMED), since[-3000:]
    # aiohttp's own report of a bad request is an ERROR with a traceback: none of it
    assert "Error handling request" not in since and "Traceback" not in since, since[-3000:]


def test_the_worker_port_serves_nothing_private_by_default(settings: Settings, tmp_path: Path) -> None:
    logfile = tmp_path / "worker.log"
    with WorkerProcess(settings, logfile) as worker:
        url = worker.settings.web_url
        for path in PRIVATE_PATHS:
            assert get(url + path).status_code == 404, path
            assert get(url + path, token=ADMIN).status_code == 404, path  # no token opens what is not there
        analytics = get(f"{url}/v1/analytics/summary?from=2026-03-01&to=2026-03-02")
        assert analytics.status_code == 403 and analytics.json()["auth"] == "unconfigured"
        assert "ANALYTICS_TOKEN" in analytics.json()["error"]
        assert get(f"{url}/health").json()["status"] == "ok"
        assert get(f"{url}/ready").status_code in (200, 503)  # answers (ready once Kafka/ClickHouse/Redis are)
        assert 'cinerec_served_model_info{version="v1"} 1.0' in get(f"{url}/metrics").text
        assert get(f"{url}/dashboard").status_code == 200
        assert get(f"{url}/v1/users/1/recommendations").status_code == 200
        assert_malformed_requests_are_short_json_400s(url, logfile)


def test_debug_views_when_switched_on_need_the_admin_token(settings: Settings, tmp_path: Path) -> None:
    on = settings.with_overrides(debug_views=True, admin_token=ADMIN)
    with WorkerProcess(on, tmp_path / "worker.log") as worker:
        url = worker.settings.web_url
        for path in ("/debug/partitions/", "/debug/user-stats/42/"):
            missing = get(url + path)
            assert missing.status_code == 401 and missing.json()["auth"] == "missing"
            assert missing.headers["WWW-Authenticate"].startswith("Bearer")
            wrong = get(url + path, token="not-the-admin-token")
            assert wrong.status_code == 403 and wrong.json()["auth"] == "rejected"
        partitions = get(f"{url}/debug/partitions/", token=ADMIN)
        assert partitions.status_code == 200 and set(partitions.json()) == {"actives", "standbys"}
        unknown = get(f"{url}/debug/user-stats/42/", token=ADMIN)
        assert unknown.status_code == 404 and "user 42" in unknown.json()["error"]
        bad = get(f"{url}/debug/user-stats/{'9' * 5000}/", token=ADMIN)
        assert bad.status_code == 400 and len(bad.json()["error"]) < 200
        for path in PRIVATE_PATHS[:4]:  # Faust's table and router views stay off
            assert get(url + path, token=ADMIN).status_code == 404, path


def test_cinerec_serve_answers_malformed_requests_like_the_worker(settings: Settings, tmp_path: Path) -> None:
    logfile = tmp_path / "serve.log"
    with serve_process(settings, logfile) as url:
        assert_malformed_requests_are_short_json_400s(url, logfile)
