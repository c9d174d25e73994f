"""JSON views of the business metrics: `GET /v1/analytics/summary` and
`GET /v1/analytics/dashboard` (what the dashboard page draws), both `?from=YYYY-MM-DD&to=YYYY-MM-DD`.

The ClickHouse driver is synchronous: queries run in the default executor so
the event loop keeps serving recommendations, bounded by a deadline. A bad
range is a 400 saying what is wrong; an empty range is zeros.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

from aiohttp import web
from clickhouse_driver import Client
from clickhouse_driver.errors import Error as ClickHouseError

from app.analytics import api
from app.analytics.api import DateRange, InvalidRange
from app.web import metrics
from app.web.handlers import error, json_response
from app.web.keys import SETTINGS

log = logging.getLogger(__name__)

Report = Callable[[Client, DateRange], dict[str, Any]]


def query_deadline_s(network_timeout_s: float) -> float:
    """Answer within this, whatever ClickHouse does (its driver's own timeouts are per socket call)."""
    return max(network_timeout_s * 6, 30.0)


async def respond(request: web.Request, report: Report) -> web.Response:
    """Validate ?from&to, run `report` in an executor with a deadline, answer JSON."""
    try:
        period = DateRange.parse(request.query.get("from"), request.query.get("to"))
    except InvalidRange as exc:
        return error(400, str(exc))
    settings = request.app[SETTINGS]
    loop = asyncio.get_running_loop()
    try:
        body = await asyncio.wait_for(
            loop.run_in_executor(None, api.run, settings, report, period),
            timeout=query_deadline_s(settings.network_timeout_s),
        )
    except asyncio.TimeoutError:
        log.warning("analytics %s %s..%s timed out", report.__name__, period.first, period.last)
        return error(504, "ClickHouse did not answer in time")
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


ROUTES = (
    ("/v1/analytics/summary", summary),
    ("/v1/analytics/dashboard", dashboard_data),
)


def setup_routes(app: web.Application) -> None:
    """Add the analytics views (counted and timed like the other routes)."""
    for path, handler in ROUTES:
        app.router.add_get(path, metrics.instrumented(path, handler))
