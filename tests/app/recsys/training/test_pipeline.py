"""The retrain gate and run configuration (the full pipeline: tests/integration/test_retrain.py)."""
from __future__ import annotations

import numpy as np
import pytest

from app.recsys.models.als import ALSRecommender
from app.recsys.data.dataset import Interactions, build_dataset
from app.recsys.training.pipeline import RetrainConfig, als_fitter, gate, sample_users
from app.settings import Settings


def _metrics(ndcg: float, users: float = 50.0) -> dict[str, float]:
    return {"ndcg@10": ndcg, "recall@10": ndcg * 1.5, "users": users}


def test_gate_passes_when_als_beats_popular_and_nothing_is_served() -> None:
    ok, reason = gate(_metrics(0.20), _metrics(0.05), None, RetrainConfig())
    assert ok, reason


def test_gate_rejects_als_not_better_than_popular() -> None:
    ok, reason = gate(_metrics(0.05), _metrics(0.05), None, RetrainConfig())
    assert not ok
    assert "does not beat Popular" in reason


def test_gate_requires_the_configured_lift_over_popular() -> None:
    config = RetrainConfig(min_lift=0.5)
    assert not gate(_metrics(0.07), _metrics(0.05), None, config)[0]
    assert gate(_metrics(0.08), _metrics(0.05), None, config)[0]


def test_gate_rejects_a_clear_drop_against_the_served_version() -> None:
    served = _metrics(0.30)
    ok, reason = gate(_metrics(0.26), _metrics(0.05), served, RetrainConfig(max_drop=0.10))
    assert not ok
    assert "below the served version" in reason
    assert gate(_metrics(0.28), _metrics(0.05), served, RetrainConfig(max_drop=0.10))[0]


def test_gate_rejects_a_holdout_without_evaluable_users() -> None:
    ok, reason = gate(_metrics(0.0, users=0), _metrics(0.0, users=0), None, RetrainConfig())
    assert not ok
    assert "no users" in reason


@pytest.mark.parametrize(
    "kwargs",
    [{"holdout_days": 0}, {"window_days": 5, "holdout_days": 7}, {"k": 0}, {"max_drop": 1.0}, {"min_lift": -0.1},
     {"eval_users": 0}],
)
def test_config_rejects_unusable_values(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        RetrainConfig(**kwargs)


def test_sample_users_keeps_every_event_of_the_chosen_users() -> None:
    users = np.repeat(np.arange(1, 101), 3)
    events = Interactions.from_columns(
        {"user_id": users, "film_id": np.arange(len(users)) + 1, "event_type": ["play"] * len(users),
         "ts": np.arange(len(users), dtype=float)}
    )
    sample = sample_users(events, 10)
    chosen = np.unique(sample.user_id)
    assert len(chosen) == 10
    assert len(sample) == 30  # all three events of each chosen user
    assert np.array_equal(sample_users(events, 10).film_id, sample.film_id)  # fixed sample
    assert sample_users(events, 100) is events and sample_users(events, None) is events


def test_implicit_fitter_warm_starts_the_final_fit_with_the_configured_iterations(planted: Interactions) -> None:
    dataset = build_dataset(planted)
    params = {"factors": 8, "regularization": 0.1, "alpha": 2.0, "iterations": 10}
    settings = Settings.from_env({}).with_overrides(train_backend="implicit")
    with als_fitter(settings, RetrainConfig(als=params, warm_start_iterations=1)) as fit:
        holdout = fit(dataset, None, None, None)
        final = fit(dataset, None, None, holdout)
    cold = ALSRecommender(**params).fit(dataset)
    warm = ALSRecommender(**params).fit(dataset, warm_start=holdout, iterations=1)
    np.testing.assert_allclose(holdout.item_factors, cold.item_factors, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(final.item_factors, warm.item_factors, rtol=1e-5, atol=1e-6)
