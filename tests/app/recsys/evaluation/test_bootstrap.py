"""The paired bootstrap on hand-computed cases."""
from __future__ import annotations

import numpy as np
import pytest

from app.recsys.evaluation.bootstrap import Difference, paired_bootstrap


def test_identical_differences_give_a_zero_width_interval_at_that_difference() -> None:
    # every resample of d = (0.25, 0.25, 0.25) has mean 0.25
    out = paired_bootstrap(np.array([0.5, 0.75, 1.0]), np.array([0.25, 0.5, 0.75]))
    assert (out.mean, out.low, out.high, out.users) == (pytest.approx(0.25), pytest.approx(0.25),
                                                         pytest.approx(0.25), 3)


def test_pairing_removes_what_both_models_share() -> None:
    # users range from easy (0.9) to hard (0.0) for both models; A is 0.01 better on each one:
    # unpaired, the spreads overlap completely; paired, the difference is exactly 0.01
    base = np.linspace(0.0, 0.9, 50)
    out = paired_bootstrap(base + 0.01, base)
    assert out.low == pytest.approx(0.01) and out.high == pytest.approx(0.01)


def test_two_users_interval_is_the_range_of_resampled_means() -> None:
    # d = (0, 1): a resample of two users has mean 0 (p 1/4), 0.5 (p 1/2) or 1 (p 1/4),
    # so the 2.5% and 97.5% percentiles are 0 and 1; the mean is 0.5
    out = paired_bootstrap(np.array([0.0, 1.0]), np.array([0.0, 0.0]))
    assert (out.mean, out.low, out.high) == (0.5, 0.0, 1.0)


def test_three_users_lowest_mean_is_inside_the_interval() -> None:
    # d = (-1, 0, 1): all three resampled as -1 has p 1/27 = 3.7% > 2.5%, so the low end is -1 (high: +1)
    out = paired_bootstrap(np.array([0.0, 0.5, 1.0]), np.array([1.0, 0.5, 0.0]))
    assert (out.mean, out.low, out.high) == (0.0, -1.0, 1.0)


def test_swapping_the_models_mirrors_the_interval() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.random(200), rng.random(200)
    ab, ba = paired_bootstrap(a, b), paired_bootstrap(b, a)
    assert ab.mean == pytest.approx(-ba.mean)
    assert (ab.low, ab.high) == (pytest.approx(-ba.high), pytest.approx(-ba.low))


def test_many_users_match_the_normal_approximation() -> None:
    # n = 400 differences with sd 0.3: the 95% interval is about mean +- 1.96 * 0.3 / 20 = +- 0.0294
    rng = np.random.default_rng(2)
    d = rng.normal(0.05, 0.3, 400)
    out = paired_bootstrap(d, np.zeros(400))
    half = 1.96 * d.std(ddof=1) / np.sqrt(400)
    assert out.mean == pytest.approx(d.mean())
    assert (out.high - out.low) / 2 == pytest.approx(half, rel=0.1)
    assert out.low < out.mean < out.high


def test_fixed_seed_is_reproducible_and_input_is_checked() -> None:
    a, b = np.random.default_rng(3).random((2, 50))
    assert paired_bootstrap(a, b) == paired_bootstrap(a, b)
    with pytest.raises(ValueError, match="no users"):
        paired_bootstrap(np.zeros(0), np.zeros(0))
    with pytest.raises(ValueError, match="one score per user"):
        paired_bootstrap(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError):
        paired_bootstrap(a, b, confidence=1.0)
    with pytest.raises(ValueError):
        Difference(mean=0.0, low=0.1, high=-0.1, users=1)
    assert str(Difference(0.0123, 0.005, 0.019, 10)) == "+0.0123 [+0.0050, +0.0190]"
