"""Self-tuning inside the retrain against real ClickHouse and Redis: the search never reads the
gate's holdout, its winner and validation score are recorded in `model_runs` and start the next
run's search, and every first-level model's recall@100 on the holdout is recorded."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.recsys.data.synthetic import PlantedTaste, seed
from app.recsys.training import pipeline
from app.recsys.tuning.search import tune
from app.recsys.tuning.space import ALSPoint
from app.settings import Settings
from app.storage import model_runs

pytestmark = pytest.mark.redis_db(10)


@pytest.fixture
def settings(clickhouse_settings: Settings, redis_settings: Settings, tmp_path: Path) -> Settings:
    seed(clickhouse_settings, PlantedTaste(users=300, films=200, events=15_000))
    return clickhouse_settings.with_overrides(redis_url=redis_settings.redis_url, model_dir=tmp_path / "models")


def test_the_tuned_winner_is_recorded_and_starts_the_next_run(settings: Settings,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    searched = []

    def spy(train, *args, **kwargs):
        searched.append(train)
        return tune(train, *args, **kwargs)

    monkeypatch.setattr(pipeline, "tune", spy)
    first = pipeline.retrain(settings)
    assert first.status == "published", first.reason
    # the search saw only the part before the gate's holdout
    assert searched[0].max_ts < first.holdout.start and len(searched[0]) < first.n_interactions

    runs = {run["version"]: run for run in model_runs.recent(settings)}
    tuning = json.loads(runs[first.version]["params"])["tuning"]
    best = ALSPoint.from_params(tuning["als"]["best"])
    assert best is not None and tuning["als"]["start"] == "defaults"
    assert len(tuning["als"]["trials"]) == settings.tune_trials and tuning["als"]["stopped_by"] == "trials"
    assert tuning["als"]["validation_ndcg@10"] == max(t["validation_ndcg@10"] for t in tuning["als"]["trials"])
    # the published spec is the winner's, at full iterations
    recorded_spec = json.loads(runs[first.version]["params"])
    assert recorded_spec["als"]["alpha"] == best.alpha and recorded_spec["als"]["iterations"] == 15
    assert recorded_spec["weights"]["rating_exponent"] == best.rating_exponent

    first_level = json.loads(runs[first.version]["first_level"])
    assert set(first_level) == {"als", "popular", "trending", "ease", "item_knn", "fm"}
    for name, figures in first_level.items():
        assert 0 < figures["recall@100"] <= 1 and figures["users"] == first.metrics["users"], name
    assert first_level["als"]["ndcg@10"] == pytest.approx(first.metrics["ndcg@10"])
    assert first_level["ease"]["recall@100"] > first_level["popular"]["recall@100"]

    second = pipeline.retrain(settings.with_overrides(tune_trials=3))
    tuning = second.params["tuning"]
    assert tuning["als"]["start"] == "previous run"
    assert tuning["als"]["trials"][0]["params"] == best.params()
    assert tuning["budget_source"] == "previous run" or tuning["budget_source"].startswith("minimum (previous run")


def test_no_tune_fits_the_defaults_and_records_no_search(settings: Settings) -> None:
    report = pipeline.retrain(settings, pipeline.RetrainConfig(tune=False, first_level=()))
    assert report.params["tuning"] is None and "tune" in report.timings
    assert report.params["als"] == ALSPoint().spec(0.0).params
    assert set(report.first_level) == {"als", "popular", "trending"}
