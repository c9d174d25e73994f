"""JSON views of the business metrics: `GET /v1/analytics/summary`,
`GET /v1/analytics/dashboard` and `GET /v1/analytics/experiment` (what the dashboard page
draws), all `?from=YYYY-MM-DD&to=YYYY-MM-DD`.

Behind the ANALYTICS policy (a bearer token unless ANALYTICS_OPEN, app/web/auth.py).
Reports run in `app.analytics.service.Analytics` (own threads, limit, deadline,
cache), so they cannot starve serving or readiness. A bad range is a 400 saying
what is wrong, an empty range is zeros, a full pool a 429 with Retry-After.
"""
from __future__ import annotations

import logging

from aiohttp import web
from clickhouse_driver.errors import Error as ClickHouseError

from app.analytics import api
from app.analytics.api import DateRange, InvalidRange, ReportTimeout
from app.analytics.experiment import experiment
from app.analytics.service import Busy, Report
from app.web import auth, metrics
from app.web.handlers import error, json_response
from app.web.keys import ANALYTICS

log = logging.getLogger(__name__)


async def respond(request: web.Request, report: Report) -> web.Response:
    """Validate ?from&to, get the report from the analytics service, answer JSON."""
    try:
        period = DateRange.parse(request.query.get("from"), request.query.get("to"))
    except InvalidRange as exc:
        return error(400, str(exc))
    try:
        body = await request.app[ANALYTICS].report(report, period)
    except Busy as exc:
        response = error(429, str(exc))
        response.headers["Retry-After"] = str(exc.retry_after_s)
        return response
    except ReportTimeout as exc:
        log.warning("analytics %s %s..%s timed out: %s", report.__name__, period.first, period.last, exc)
        return error(504, f"ClickHouse did not answer in time: {exc}")
    except (ClickHouseError, OSError) as exc:
        log.warning("analytics %s failed: %s", report.__name__, exc)
        return error(503, f"ClickHouse unavailable: {type(exc).__name__}")
    return json_response(body)


async def summary(request: web.Request) -> web.Response:
    """Headline business metrics of a date range."""
    return await respond(request, api.summary)


async def dashboard_data(request: web.Request) -> web.Response:
    """Every series the dashboard draws, in one request."""
    return await respond(request, api.dashboard)


async def experiment_data(request: web.Request) -> web.Response:
    """The running (or last) experiment: per-arm daily figures, intervals, verdict, decisions."""
    return await respond(request, experiment)


ROUTES = (
    ("/v1/analytics/summary", summary),
    ("/v1/analytics/dashboard", dashboard_data),
    ("/v1/analytics/experiment", experiment_data),
)


def setup_routes(app: web.Application) -> None:
    """Add the analytics views (token-protected, counted and timed like the other routes)."""
    for path, handler in ROUTES:
        app.router.add_get(path, metrics.instrumented(path, auth.protected(auth.ANALYTICS, handler)))
