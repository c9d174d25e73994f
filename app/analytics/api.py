"""Business metrics as plain dicts (JSON-ready) for the CLI report, the HTTP
views and the dashboard. The SQL lives in `app.analytics.queries`; this module
validates the date range, runs the queries and turns counts into rates.

Everything here is synchronous (clickhouse-driver); the aiohttp views call it
through `app.analytics.service` (its own thread pool, limit, deadline and cache).
Every query of a report carries ClickHouse's `max_execution_time` (`Bounded`),
so a report that runs out of time stops in ClickHouse too.
"""
from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Protocol

from clickhouse_driver import Client
from clickhouse_driver.errors import ErrorCodes, ServerException

from app.analytics import queries as q
from app.schema import EVENT_TYPES, WATCH_EVENT_TYPES
from app.settings import Settings
from app.storage.clickhouse import client
from app.telemetry import EVENTS_DEAD_LETTERED, EVENTS_LOADED

# Longest range one request may ask for: bounds the work of one query.
MAX_RANGE_DAYS = 366
RETENTION_DAYS = (1, 7, 30)


class InvalidRange(ValueError):
    """A date range we refuse; the message is meant for the person who sent it."""


class ReportTimeout(TimeoutError):
    """A report ran out of time (its deadline, or ClickHouse's max_execution_time)."""


class Queries(Protocol):
    """What a report needs of a ClickHouse client (a `Client`, or `Bounded` around one)."""

    def execute(self, query: str, params: Any = None) -> Any: ...


class Bounded:
    """A client whose every query may run only for the report's time left.

    `max_execution_time` makes ClickHouse itself abandon a query at the
    deadline, so a thread never keeps a slow scan going after its request gave
    up; `cancelled` (set by the waiting request) stops the queries not started yet.
    """

    def __init__(self, conn: Client, timeout_s: float, cancelled: threading.Event | None = None) -> None:
        self._conn = conn
        self._deadline = time.monotonic() + timeout_s
        self._cancelled = cancelled or threading.Event()

    def execute(self, query: str, params: Any = None) -> Any:
        left = self._deadline - time.monotonic()
        if left <= 0 or self._cancelled.is_set():
            raise ReportTimeout("the report ran out of time before its next query")
        try:
            # seconds, a whole number on ClickHouse 18.16
            return self._conn.execute(query, params, settings={"max_execution_time": max(1, math.ceil(left))})
        except ServerException as exc:
            if exc.code == ErrorCodes.TIMEOUT_EXCEEDED:
                raise ReportTimeout("ClickHouse stopped a query at max_execution_time") from None
            raise


FIRST_DAY = date(1970, 1, 2)
LAST_DAY = date(2105, 12, 31)


@dataclass(frozen=True)
class DateRange:
    """Inclusive range of UTC calendar days."""

    first: date
    last: date

    @classmethod
    def parse(cls, first: str | None, last: str | None) -> "DateRange":
        """From `YYYY-MM-DD` strings; `InvalidRange` says what is wrong."""
        start, end = _parse_day("from", first), _parse_day("to", last)
        if end < start:
            raise InvalidRange(f"'from' ({start}) is after 'to' ({end})")
        if (end - start).days + 1 > MAX_RANGE_DAYS:
            raise InvalidRange(f"range is {(end - start).days + 1} days; at most {MAX_RANGE_DAYS} days per request")
        return cls(start, end)

    def days(self) -> list[date]:
        return [self.first + timedelta(days=i) for i in range((self.last - self.first).days + 1)]

    def params(self) -> dict[str, Any]:
        """Query parameters (see `app.analytics.queries` for their meaning)."""
        return {
            "start": _epoch(self.first),
            "stop": _epoch(self.last + timedelta(days=1)),
            "day_from": self.first,
            "day_to": self.last,
            **_EVENT_PARAMS,
        }


def _parse_day(name: str, value: str | None) -> date:
    if not value:
        raise InvalidRange(f"'{name}' is required, as YYYY-MM-DD")
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise InvalidRange(f"'{name}' must be a date as YYYY-MM-DD, got {value[:40]!r}") from None
    if not FIRST_DAY <= day <= LAST_DAY:  # ClickHouse DateTime cannot hold the rest
        raise InvalidRange(f"'{name}' must be between {FIRST_DAY} and {LAST_DAY}, got {day}")
    return day


def _epoch(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp())


def _event_params() -> dict[str, Any]:
    names = {"rate", "play", "complete", "impression", "click"}
    missing = names - set(EVENT_TYPES)
    if missing:  # app.schema renamed an event type: fail at import, not with silent zeros
        raise RuntimeError(f"analytics queries name unknown event types: {sorted(missing)}")
    return {**{name: name for name in names}, "watch_types": tuple(sorted(WATCH_EVENT_TYPES))}


_EVENT_PARAMS = _event_params()


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, 0.0 when there is nothing to divide by (empty ranges)."""
    return float(numerator) / denominator if denominator else 0.0


def _by_day(rows: Iterable[tuple], columns: tuple[str, ...], period: DateRange) -> list[dict[str, Any]]:
    """One dict per day of the range (days without rows are zeros): ClickHouse 18.16 has no WITH FILL."""
    found = {row[0]: dict(zip(columns, row[1:])) for row in rows}
    zeros = dict.fromkeys(columns, 0)
    return [{"day": day.isoformat(), **found.get(day, zeros)} for day in period.days()]


def _total(rows: list[dict[str, Any]], column: str) -> float:
    return sum(row[column] for row in rows)


def time_on_site(conn: Queries, period: DateRange) -> dict[str, Any]:
    """Average time on site per active user per day, and active users."""
    params = period.params()
    days = _by_day(conn.execute(q.TIME_ON_SITE_BY_DAY, params), ("active_users", "seconds"), period)
    for row in days:
        row["avg_time_on_site_s"] = ratio(row["seconds"], row["active_users"])
    active_user_days = _total(days, "active_users")
    return {
        "active_users": conn.execute(q.ACTIVE_USERS, params)[0][0],
        "active_user_days": active_user_days,
        "avg_time_on_site_s": ratio(_total(days, "seconds"), active_user_days),
        "days": days,
    }


def retention(conn: Queries, period: DateRange) -> dict[str, Any]:
    """D1/D7/D30 retention of the daily cohorts that started in the range.

    A cohort's Dk is `None` until day cohort+k has been observed (the last
    day with events), so young cohorts do not look like churn. The range
    totals count only users of cohorts whose Dk is observable (`eligible`).
    """
    params = period.params()
    last_day = conn.execute(q.LAST_EVENT_DAY, params)[0][0]
    cohorts = []
    totals = {k: {"retained": 0, "eligible": 0} for k in RETENTION_DAYS}
    for cohort, size, *retained in conn.execute(q.RETENTION_BY_COHORT, params):
        row: dict[str, Any] = {"cohort": cohort.isoformat(), "size": size}
        for k, count in zip(RETENTION_DAYS, retained):
            observable = cohort + timedelta(days=k) <= last_day
            row[f"d{k}"] = ratio(count, size) if observable else None
            if observable:
                totals[k]["retained"] += count
                totals[k]["eligible"] += size
        cohorts.append(row)
    summary = {f"d{k}": {**t, "rate": ratio(t["retained"], t["eligible"])} for k, t in totals.items()}
    return {**summary, "cohorts": cohorts}


def engagement(conn: Queries, period: DateRange) -> dict[str, Any]:
    """Average rating, completion (completes / plays) and watched share per day."""
    params = period.params()
    days = _by_day(
        conn.execute(q.ENGAGEMENT_BY_DAY, params), ("ratings", "rating_sum", "plays", "completes"), period
    )
    shares = _by_day(conn.execute(q.WATCH_RATIO_BY_DAY, params), ("viewings", "ratio_sum"), period)
    watched = {row["day"]: row for row in shares}
    for row in days:
        row.update(watched[row["day"]])
        row["avg_rating"] = ratio(row["rating_sum"], row["ratings"])
        row["completion_rate"] = ratio(row["completes"], row["plays"])
        row["avg_watch_ratio"] = ratio(row["ratio_sum"], row["viewings"])
    return {
        "ratings": _total(days, "ratings"),
        "avg_rating": ratio(_total(days, "rating_sum"), _total(days, "ratings")),
        "plays": _total(days, "plays"),
        "completes": _total(days, "completes"),
        "completion_rate": ratio(_total(days, "completes"), _total(days, "plays")),
        "viewings": _total(days, "viewings"),
        "avg_watch_ratio": ratio(_total(days, "ratio_sum"), _total(days, "viewings")),
        "days": days,
    }


_FUNNEL_COUNTS = ("impressions", "clicks", "clicked", "watched", "watch_seconds")


def _funnel_rows(groups: dict[str, dict[str, float]], key: str) -> list[dict[str, Any]]:
    rows = []
    for name, counts in sorted(groups.items()):
        rows.append({key: name, **counts, "ctr": ratio(counts["clicks"], counts["impressions"])})
    return rows


def funnel(conn: Queries, period: DateRange) -> dict[str, Any]:
    """Impressions, clicks, CTR and attributed watch time per model_version and per source."""
    params = period.params()
    cells: dict[tuple[str, str], dict[str, float]] = {}
    for source, version, impressions, clicks in conn.execute(q.FUNNEL, params):
        cells.setdefault((source, version), dict.fromkeys(_FUNNEL_COUNTS, 0)).update(
            impressions=impressions, clicks=clicks
        )
    for source, version, clicked, watched, seconds in conn.execute(q.ATTRIBUTED_WATCH, params):
        cells.setdefault((source, version), dict.fromkeys(_FUNNEL_COUNTS, 0)).update(
            clicked=clicked, watched=watched, watch_seconds=float(seconds)
        )
    by_source: dict[str, dict[str, float]] = {}
    by_version: dict[str, dict[str, float]] = {}
    totals = dict.fromkeys(_FUNNEL_COUNTS, 0)
    for (source, version), counts in cells.items():
        for groups, name in ((by_source, source), (by_version, version)):
            group = groups.setdefault(name, dict.fromkeys(_FUNNEL_COUNTS, 0))
            for column in _FUNNEL_COUNTS:
                group[column] += counts[column]
        for column in _FUNNEL_COUNTS:
            totals[column] += counts[column]
    return {
        **totals,
        "ctr": ratio(totals["clicks"], totals["impressions"]),
        "by_model_version": _funnel_rows(by_version, "model_version"),
        "by_source": _funnel_rows(by_source, "source"),
    }


def ingestion(conn: Queries, period: DateRange) -> dict[str, Any]:
    """Ingestion lag per day (ClickHouse) and dead-letter rate (this process's loader telemetry).

    The DLQ figures are the Prometheus counters of the worker serving the
    request (the Faust worker runs the loader and the web views), since it started.
    """
    days = _by_day(
        conn.execute(q.INGEST_LAG_BY_DAY, period.params()), ("events", "lag_avg_s", "lag_p50_s", "lag_p95_s"), period
    )
    loaded = _counter_total(EVENTS_LOADED)
    reasons = _counter_by_label(EVENTS_DEAD_LETTERED, "reason")
    dead = sum(reasons.values())
    return {
        "days": days,
        "since_process_start": {
            "loaded": loaded,
            "dead_lettered": dead,
            "dlq_rate": ratio(dead, loaded + dead),
            "dead_letters_by_reason": reasons,
        },
    }


def _counter_samples(counter: Any) -> list:
    return [s for metric in counter.collect() for s in metric.samples if s.name.endswith("_total")]


def _counter_total(counter: Any) -> float:
    return sum(s.value for s in _counter_samples(counter))


def _counter_by_label(counter: Any, label: str) -> dict[str, float]:
    return {s.labels[label]: s.value for s in _counter_samples(counter)}


def _json_field(text: str) -> Any:
    """A JSON column of model_runs, or the raw text when a writer stored something else."""
    try:
        return json.loads(text) if text else {}
    except ValueError:
        return text


def model_runs(conn: Queries, period: DateRange) -> list[dict[str, Any]]:
    """Training runs overlapping the range, with offline and baseline metrics."""
    columns = (
        "version", "started_at", "finished_at", "backend", "status", "published", "reason",
        "n_users", "n_items", "n_interactions", "metrics", "baseline_metrics",
    )
    runs = []
    for row in conn.execute(q.MODEL_RUNS, period.params()):
        run = dict(zip(columns, row))
        run["started_at"] = run["started_at"].isoformat()
        run["finished_at"] = run["finished_at"].isoformat()
        run["published"] = bool(run["published"])
        run["metrics"] = _json_field(run["metrics"])
        run["baseline_metrics"] = _json_field(run["baseline_metrics"])
        runs.append(run)
    return runs


def _without_days(section: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in section.items() if k not in ("days", "cohorts")}


def summary(conn: Queries, period: DateRange) -> dict[str, Any]:
    """Headline numbers of the range (what `cinerec report` and /v1/analytics/summary show)."""
    return {
        "from": period.first.isoformat(),
        "to": period.last.isoformat(),
        "time_on_site": _without_days(time_on_site(conn, period)),
        "retention": _without_days(retention(conn, period)),
        "engagement": _without_days(engagement(conn, period)),
        "funnel": funnel(conn, period),
    }


def dashboard(conn: Queries, period: DateRange) -> dict[str, Any]:
    """Everything the dashboard draws: the summary sections with their per-day series."""
    return {
        "from": period.first.isoformat(),
        "to": period.last.isoformat(),
        "time_on_site": time_on_site(conn, period),
        "retention": retention(conn, period),
        "engagement": engagement(conn, period),
        "funnel": funnel(conn, period),
        "ingestion": ingestion(conn, period),
        "model_runs": model_runs(conn, period),
    }


def run(
    settings: Settings,
    report: Callable[[Queries, DateRange], Any],
    period: DateRange,
    timeout_s: float | None = None,
    cancelled: threading.Event | None = None,
) -> Any:
    """`report` on a fresh connection that is always closed (one per call: the driver is
    not thread-safe), its queries bounded by `timeout_s` (default ANALYTICS_TIMEOUT_S)."""
    conn = client(settings)
    try:
        return report(Bounded(conn, timeout_s or settings.analytics_timeout_s, cancelled), period)
    finally:
        conn.disconnect()
