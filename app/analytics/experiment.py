"""The dashboard's experiment section (`GET /v1/analytics/experiment?from=&to=`): the
running experiment, else the one started last before the end of the range, with its
per-arm daily figures (`app.experiments.queries.ARM_DAILY`, the analysts' view for one
experiment), its report (intervals, sample-ratio check, verdict) and its decision log.

A report like the others (app.analytics.service: own threads, deadline, cache): every
query goes through the report's bounded client.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from app.analytics.api import DateRange, Queries
from app.experiments import analysis, store
from app.experiments import queries as q
from app.experiments.model import Experiment, State


def shown_experiment(experiments: list[Experiment], period: DateRange) -> Experiment | None:
    """The running experiment, else the one started last before the range ends (None: none yet)."""
    running = [e for e in experiments if e.state is State.RUNNING]
    if running:
        return running[0]
    end = datetime.combine(period.last + timedelta(days=1), datetime.min.time(), timezone.utc)
    started = [e for e in experiments if e.started_at is not None and e.started_at < end]
    return max(started, key=lambda e: e.started_at, default=None)


def experiment(conn: Queries, period: DateRange) -> dict[str, Any]:
    """The section's data; `experiment` is None when no experiment has started yet."""
    out: dict[str, Any] = {"from": period.first.isoformat(), "to": period.last.isoformat(), "experiment": None}
    chosen = shown_experiment(store.list_all(conn), period)  # type: ignore[arg-type]  (a bounded client)
    if chosen is None:
        return out
    report = analysis.analyse(conn, chosen, datetime.now(timezone.utc))  # type: ignore[arg-type]
    params = {"experiment_id": chosen.id, "seed": chosen.hash_seed, "threshold": chosen.threshold,
              "start": int(report.start.timestamp()), "stop": int(report.stop.timestamp())}
    daily = [dict(zip(q.DAILY_COLUMNS, row)) for row in conn.execute(q.ARM_DAILY, params)]
    for row in daily:
        row["day"] = row["day"].isoformat()
    decisions = [{"at": d.decided_at.isoformat(), "action": d.action.value, "verdict": d.verdict}
                 for d in store.decisions(conn, chosen.id)]  # type: ignore[arg-type]
    return {**out, "experiment": chosen.to_json(), "report": report.to_json(), "daily": daily, "decisions": decisions}
