"""The run record against a real ClickHouse: newest first, a re-recorded run replaces its row."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from app.recsys.training.run import RunReport
from app.settings import Settings
from app.storage import model_runs

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)


def _row(version: str, started: datetime, status: str, finished: datetime) -> dict:
    return RunReport(version=version, started_at=started, status=status, reason=f"{status} here",
                     finished_at=finished).row()


@pytest.mark.integration
def test_recent_runs_newest_first_and_a_rerecorded_run_replaces_its_row(clickhouse_settings: Settings) -> None:
    model_runs.record(clickhouse_settings, _row("v1", T0, "failed", T0 + timedelta(minutes=1)))
    model_runs.record(clickhouse_settings, _row("v2", T0 + timedelta(hours=1), "rejected", T0 + timedelta(hours=2)))
    # the same version recorded again, finishing later (the table keeps the latest finished_at)
    model_runs.record(clickhouse_settings, _row("v1", T0, "published", T0 + timedelta(minutes=5)))

    runs = model_runs.recent(clickhouse_settings)
    assert [(r["version"], r["status"], r["reason"]) for r in runs] == [
        ("v2", "rejected", "rejected here"), ("v1", "published", "published here")]
    assert set(runs[0]) == set(model_runs.LISTED)
    assert [r["version"] for r in model_runs.recent(clickhouse_settings, limit=1)] == ["v2"]


@pytest.mark.integration
def test_last_finished_is_the_newest_run_that_got_through(clickhouse_settings: Settings) -> None:
    assert model_runs.last_finished(clickhouse_settings) is None
    done = RunReport(version="v1", started_at=T0, status="rejected", finished_at=T0 + timedelta(seconds=90),
                     params={"tuning": {"als": {"best": {"alpha": 1.0}}}}, timings={"tune": 30.0})
    model_runs.record(clickhouse_settings, done.row())
    model_runs.record(clickhouse_settings, _row("v2", T0 + timedelta(hours=1), "failed", T0 + timedelta(hours=2)))
    last = model_runs.last_finished(clickhouse_settings)
    assert last == {"params": done.params, "timings": {"tune": 30.0}, "seconds": 90.0}
