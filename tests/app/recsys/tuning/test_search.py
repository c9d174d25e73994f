import pytest

from app.recsys.tuning.search import MIN_BUDGET_S, Budget, TuneConfig, previous_point, tune
from app.recsys.tuning.space import EASE_REGULARIZATIONS, ALSPoint

QUICK = TuneConfig(trials=6, startup_trials=3, trial_iterations=4)
ROOMY = Budget(share=0.5, rest_s=3600.0, full_pairs=1)


@pytest.fixture(scope="module")
def tuned(planted):
    return tune(planted, QUICK, ROOMY)


def test_the_winner_is_the_best_trial_and_a_first_search_starts_from_the_defaults(tuned):
    values = [t["validation_ndcg@10"] for t in tuned.trials]
    assert len(values) == 6 and tuned.als_value == max(values)
    assert tuned.trials[0]["params"] == ALSPoint().params() and tuned.start == "defaults"
    assert tuned.als_value >= values[0]  # never worse on validation than the untuned defaults
    assert tuned.stopped_by == "trials" and tuned.budget_s == 3600.0 and tuned.budget_source == "previous run"
    assert set(tuned.ease) == {str(r) for r in EASE_REGULARIZATIONS}
    assert tuned.ease_value == max(tuned.ease.values()) and str(tuned.ease_regularization) in tuned.ease


def test_the_search_is_seeded(planted, tuned):
    again = tune(planted, QUICK, ROOMY)
    assert again.trials == tuned.trials and again.als == tuned.als


def test_the_next_search_starts_from_the_recorded_winner(planted, tuned):
    record = {"tuning": tuned.record()}
    assert previous_point(record) == tuned.als
    following = tune(planted, QUICK, ROOMY, previous=previous_point(record))
    assert following.trials[0]["params"] == tuned.als.params() and following.start == "previous run"
    assert following.als_value >= tuned.als_value - 1e-12
    assert previous_point({}) is None and previous_point({"tuning": None}) is None


def test_the_time_budget_stops_the_search(planted):
    result = tune(planted, QUICK, Budget(share=0.5, rest_s=0.0, full_pairs=1, minimum_s=0.0))
    assert result.stopped_by == "time" and len(result.trials) == 1


def test_budget_is_a_share_of_the_whole_retrain():
    # share 0.25 of the whole = 1/3 of the rest
    assert Budget(0.25, rest_s=300.0, full_pairs=0).seconds(1.0, 1, 8) == (100.0, "previous run")
    # no previous run: 2.5 full fits, a full fit = first trial x pairs ratio x 15/8 iterations
    seconds, source = Budget(0.5, None, full_pairs=1_000_000).seconds(2.0, 100_000, 8)
    assert seconds == pytest.approx(2.5 * 2.0 * 10 * 15 / 8) and source == "estimated from the first trial"
    seconds, source = Budget(0.5, None, full_pairs=10).seconds(0.1, 10, 8)
    assert seconds == MIN_BUDGET_S and source.startswith("minimum")


def test_config_rejects_unusable_values():
    with pytest.raises(ValueError):
        TuneConfig(trials=0)
    with pytest.raises(ValueError):
        TuneConfig(time_share=1.0)
