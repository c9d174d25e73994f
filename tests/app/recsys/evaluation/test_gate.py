"""The publish gate's decisions on hand-made per-user NDCG (the full run: tests/integration/test_retrain.py)."""
from __future__ import annotations

import numpy as np
import pytest

from app.recsys.evaluation.gate import GatePolicy, decide

USERS = 200
BASE = np.linspace(0.05, 0.6, USERS)  # per-user NDCG of Popular: some users easy, some hard
BETTER = BASE + 0.05  # better on every user: the interval is [0.05, 0.05]
# +1 on 11 users, -1 on 10: mean +1/21 but an interval far across zero
AHEAD_BY_NOISE = (np.array([1.0] * 11 + [0.0] * 10), np.array([0.0] * 11 + [1.0] * 10))
BEHIND_BY_NOISE = AHEAD_BY_NOISE[::-1]


def test_clearly_better_than_popular_with_nothing_served_passes() -> None:
    verdict = decide(BETTER, BASE, None)
    assert (verdict.publish, verdict.outcome) == (True, "pass")
    assert verdict.vs_popular.low == pytest.approx(0.05) and verdict.vs_served is None


def test_clearly_worse_than_popular_fails() -> None:
    verdict = decide(BASE, BETTER, None)
    assert (verdict.publish, verdict.outcome) == (False, "fail")
    assert verdict.vs_popular.high == pytest.approx(-0.05)


def test_cannot_tell_with_nothing_served_publishes_the_better_point_estimate() -> None:
    ahead = decide(*AHEAD_BY_NOISE, None)
    assert (ahead.publish, ahead.outcome) == (True, "inconclusive")
    assert ahead.vs_popular.low < 0 < ahead.vs_popular.mean < ahead.vs_popular.high
    behind = decide(*BEHIND_BY_NOISE, None)
    assert (behind.publish, behind.outcome) == (False, "inconclusive")
    assert "popular list serves everyone" in behind.reason


def test_cannot_tell_with_a_served_model_keeps_serving() -> None:
    challenger, popular = AHEAD_BY_NOISE
    verdict = decide(challenger, popular, served=popular)
    assert (verdict.publish, verdict.outcome) == (False, "inconclusive")
    assert "keeping the served model" in verdict.reason
    # a served model that could not be scored still counts as served
    assert not decide(challenger, popular, None, serving=True).publish


def test_served_model_within_the_tolerance_passes_beyond_it_fails() -> None:
    same = decide(BETTER, BASE, served=BETTER)  # e.g. the served spec refitted: a zero difference
    assert (same.publish, same.outcome) == (True, "pass")
    assert (same.vs_served.mean, same.vs_served.low, same.vs_served.high) == (0.0, 0.0, 0.0)
    # served 0.02 better on every user, its mean NDCG 0.395: tolerance 10% = 0.0395 -> still passes
    assert decide(BETTER, BASE, served=BETTER + 0.02, policy=GatePolicy(max_drop=0.10)).publish
    # 5% tolerance = 0.01975: a 0.02 drop is beyond it
    verdict = decide(BETTER, BASE, served=BETTER + 0.02, policy=GatePolicy(max_drop=0.05))
    assert (verdict.publish, verdict.outcome) == (False, "fail")
    assert verdict.vs_served.high == pytest.approx(-0.02)


def test_min_lift_raises_the_bar_over_popular() -> None:
    # Popular's mean NDCG is 0.325: a 10% lift is 0.0325, a 20% lift 0.065, against a 0.05 gain
    assert decide(BETTER, BASE, None, GatePolicy(min_lift=0.10)).outcome == "pass"
    assert decide(BETTER, BASE, None, GatePolicy(min_lift=0.20)).outcome == "fail"


def test_no_user_to_evaluate_on_is_no_data() -> None:
    verdict = decide(np.zeros(0), np.zeros(0), None)
    assert (verdict.publish, verdict.outcome, verdict.vs_popular) == (False, "no-data", None)


@pytest.mark.parametrize("kwargs", [{"max_drop": 1.0}, {"max_drop": -0.1}, {"min_lift": -0.1}])
def test_policy_rejects_unusable_margins(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        GatePolicy(**kwargs)


def test_the_two_level_model_ships_only_when_its_interval_is_above_the_best_single() -> None:
    from app.recsys.evaluation.gate import choose

    singles = {"als": BASE + 0.02, "ease": BASE}
    better = choose(BASE + 0.05, singles)
    assert better.shipped == "two-level" and better.vs_single.low == pytest.approx(0.03)
    assert "vs als (best single)" in better.reason and better.reason.endswith(": better")
    noise = choose(AHEAD_BY_NOISE[0], {"als": AHEAD_BY_NOISE[1]})  # ahead on the mean, interval across 0
    assert noise.shipped == "als" and noise.vs_single.low < 0 < noise.vs_single.mean
    assert "not shown better" in noise.reason
    assert choose(AHEAD_BY_NOISE[0], {"als": AHEAD_BY_NOISE[1]}, always=True).shipped == "two-level"
    none = choose(None, singles)
    assert (none.shipped, none.vs_single) == ("als", None)


def test_choosing_needs_a_single_model() -> None:
    from app.recsys.evaluation.gate import choose

    with pytest.raises(ValueError, match="no single model"):
        choose(BASE, {})
