import optuna
import pytest

from app.recsys.data.dataset import EventWeights
from app.recsys.models.registry import ModelSpec
from app.recsys.tuning.space import ALSPoint, ease_spec


def test_the_default_point_is_the_untuned_defaults():
    """What --no-tune fits is what a first tuned run tries first."""
    assert ALSPoint().spec(span_days=100.0) == ModelSpec.of("als", weights=EventWeights())


def test_a_point_maps_to_als_params_and_weights():
    point = ALSPoint(alpha=2.0, rho=10.0, factors=32, rating_exponent=1.5, weighting="binary", recency="half")
    spec = point.spec(span_days=60.0, iterations=8)
    assert (spec.params["alpha"], spec.params["regularization"], spec.params["factors"], spec.params["iterations"]) == (
        2.0, 20.0, 32, 8)
    assert spec.weights == EventWeights(rating_exponent=1.5, binary=True, half_life_days=30.0)
    assert ALSPoint(recency="half").weights(span_days=0.0).half_life_days is None  # one instant: nothing to decay


def test_recorded_points_come_back_only_when_inside_the_space():
    point = ALSPoint(alpha=0.5, rho=3.0, factors=128, rating_exponent=0.0, weighting="binary", recency="half")
    assert ALSPoint.from_params(point.params()) == point
    assert ALSPoint.from_params({**point.params(), "alpha": 100.0}) is None
    assert ALSPoint.from_params({**point.params(), "factors": 48}) is None
    assert ALSPoint.from_params({k: v for k, v in point.params().items() if k != "rho"}) is None
    assert ALSPoint.from_params(None) is None


def test_trials_propose_points_of_the_space():
    trial = optuna.trial.FixedTrial(ALSPoint(alpha=1.0, rho=5.0).params())
    assert ALSPoint.suggest(trial) == ALSPoint(alpha=1.0, rho=5.0)
    sampled = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1)).ask()
    assert ALSPoint.from_params(ALSPoint.suggest(sampled).params()) is not None


def test_ease_spec():
    assert ease_spec(300.0, 2000).params == {"regularization": 300.0, "max_items": 2000}
    with pytest.raises(ValueError):
        ease_spec(0.0, 10)
