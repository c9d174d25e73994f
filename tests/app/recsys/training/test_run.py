"""Run configuration and the run record."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from app.recsys.training.run import RetrainConfig, RunReport


@pytest.mark.parametrize(
    "kwargs",
    [{"holdout_days": 0}, {"window_days": 5, "holdout_days": 7}, {"k": 0}, {"max_drop": 1.0}, {"min_lift": -0.1},
     {"eval_users": 0}],
)
def test_config_rejects_unusable_values(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        RetrainConfig(**kwargs)


def test_config_params_are_json_ready() -> None:
    params = RetrainConfig(als={"factors": 8}).params()
    assert json.loads(json.dumps(params)) == params and params["als"] == {"factors": 8}


def test_report_times_stages_and_records_failures() -> None:
    report = RunReport(version="v", started_at=datetime(2026, 1, 1, tzinfo=timezone.utc))
    with report.stage("load"):
        pass
    report.fail(ValueError("bad input"))
    report.finish()
    row = report.row()
    assert set(report.timings) == {"load"} and report.timings["load"] >= 0
    assert (row["status"], row["reason"], row["published"]) == ("failed", "ValueError: bad input", 0)
    assert row["finished_at"] == report.finished_at and json.loads(row["timings"]) == report.timings
