"""Run configuration and the run record."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from app.recsys.evaluation.bootstrap import Difference
from app.recsys.evaluation.splits import HoldoutCut
from app.recsys.training.run import RetrainConfig, RunReport


@pytest.mark.parametrize(
    "kwargs",
    [{"holdout_days": 0}, {"window_days": 5, "holdout_days": 7}, {"window_days": 0}, {"k": 0}, {"eval_users": 0},
     {"warm_start_iterations": 0}, {"tune_trials": 0}, {"tune_time_share": 1.0}, {"first_level": ("svd",)},
     {"fm_max_users": 0}],
)
def test_config_rejects_unusable_values(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        RetrainConfig(**kwargs)


def test_config_params_are_json_ready() -> None:
    params = RetrainConfig(als={"factors": 8}).params()
    assert json.loads(json.dumps(params)) == params and params["als"] == {"factors": 8}
    assert params["tune"] is True and params["first_level"] == ["ease", "item_knn", "fm"] and params["window_days"] is None


def test_report_records_the_gate_evidence_and_null_for_missing_comparisons() -> None:
    report = RunReport(version="v", started_at=datetime(2026, 1, 1, tzinfo=timezone.utc), verdict="pass",
                       holdout=HoldoutCut(1_790_000_000.0, "min_users", 512, 0.05),
                       vs_popular=Difference(0.02, 0.01, 0.03, 512))
    row = report.row()
    assert (row["verdict"], row["holdout_rule"], row["holdout_users"], row["holdout_share"]) == (
        "pass", "min_users", 512, 0.05)
    assert row["holdout_start"] == datetime.fromtimestamp(1_790_000_000, timezone.utc)
    assert (row["vs_popular_mean"], row["vs_popular_low"], row["vs_popular_high"]) == (0.02, 0.01, 0.03)
    assert (row["vs_served_mean"], row["vs_served_low"], row["vs_served_high"]) == (None, None, None)
    assert row["served_version"] == ""


def test_report_times_stages_and_records_failures() -> None:
    report = RunReport(version="v", started_at=datetime(2026, 1, 1, tzinfo=timezone.utc))
    with report.stage("load"):
        pass
    report.fail(ValueError("bad input"))
    report.finish()
    row = report.row()
    assert set(report.timings) == {"load", "load_cpu"} and report.timings["load"] >= 0 <= report.timings["load_cpu"]
    assert (row["status"], row["reason"], row["published"]) == ("failed", "ValueError: bad input", 0)
    assert row["finished_at"] == report.finished_at and json.loads(row["timings"]) == report.timings
