"""Experiment statistics on hand-computed numbers (worked out in the comments)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from app.experiments.stats import (
    Difference,
    Sample,
    bootstrap_differences,
    delta_difference,
    sample_ratio,
    users_needed,
)

Z = 1.959963984540054


def test_sample_value_and_linearised_variance() -> None:
    # x = [1, 1, 2], y = [0, 1, 1]: R = 2 / 4 = 0.5; residuals y - R x = [-0.5, 0.5, 0],
    # their variance (ddof 1) = (0.25 + 0.25 + 0) / 2 = 0.25; mean(x) = 4/3 -> 0.25 / (16/9) = 0.140625
    s = Sample(num=[0, 1, 1], den=[1, 1, 2])
    assert s.value == 0.5
    assert s.per_user_variance() == pytest.approx(0.140625)
    assert math.isnan(Sample([1.0], [1.0]).per_user_variance())  # one user: no variance
    assert math.isnan(Sample([0.0, 0.0], [0.0, 0.0]).value)  # nothing to divide by


def test_delta_difference_by_hand() -> None:
    # control as above: R_a = 0.5, Var(R_a) = 0.140625 / 3 = 0.046875
    # challenger x = [1, 1, 2], y = [1, 1, 1]: R_b = 0.75; residuals [0.25, 0.25, -0.5], variance (0.0625 * 2 + 0.25) / 2
    #   = 0.1875, / (16/9) = 0.10546875 per user, Var(R_b) = 0.03515625
    # d = 0.75 / 0.5 - 1 = 0.5; Var(d) = Var(R_b) / R_a^2 + R_b^2 Var(R_a) / R_a^4 = 0.140625 + 0.5625 * 0.046875 / 0.0625
    #   = 0.140625 + 0.421875 = 0.5625 -> half width 1.96 * 0.75
    diff = delta_difference(Sample([0, 1, 1], [1, 1, 2]), Sample([1, 1, 1], [1, 1, 2]))
    assert diff.relative == pytest.approx(0.5)
    assert (diff.low, diff.high) == pytest.approx((0.5 - Z * 0.75, 0.5 + Z * 0.75))
    assert not diff.better and not diff.worse  # the interval straddles zero


def test_delta_difference_is_undefined_without_a_control_value() -> None:
    diff = delta_difference(Sample([0, 0], [0, 0]), Sample([1, 1], [2, 2]))
    assert math.isnan(diff.relative) and not diff.better and not diff.worse


def test_delta_interval_covers_a_ctr_difference_when_the_challenger_has_no_clicks() -> None:
    # R_b = 0: d = -1, Var(d) = Var(R_b) / R_a^2 = 0 (no challenger variance) + 0 -> a point interval
    diff = delta_difference(Sample([1, 1], [2, 2]), Sample([0, 0], [2, 2]))
    assert (diff.relative, diff.low, diff.high) == (-1.0, -1.0, -1.0)
    assert diff.worse


def test_bootstrap_of_constant_users_is_exact() -> None:
    # every control user 2.0, every challenger user 3.0: any resample gives 3 / 2 - 1 = 0.5
    control, challenger = Sample(np.full(40, 2.0), np.ones(40)), Sample(np.full(30, 3.0), np.ones(30))
    [diff] = bootstrap_differences([control], [challenger], seed=1, replicates=200)
    assert (diff.relative, diff.low, diff.high) == pytest.approx((0.5, 0.5, 0.5))
    assert diff.better


def test_bootstrap_agrees_with_the_normal_interval_on_a_large_sample() -> None:
    # means of exponential(1) vs exponential(1.2) with 8k users each: the interval of
    # the relative difference is close to the delta method's (same large-sample theory)
    rng = np.random.default_rng(5)
    a, b = rng.exponential(1.0, 8_000), rng.exponential(1.2, 8_000)
    ones_a, ones_b = np.ones_like(a), np.ones_like(b)
    [boot] = bootstrap_differences([Sample(a, ones_a)], [Sample(b, ones_b)], seed=2, replicates=1_000)
    delta = delta_difference(Sample(a, ones_a), Sample(b, ones_b))
    assert boot.relative == pytest.approx(delta.relative)
    assert boot.low == pytest.approx(delta.low, abs=0.006) and boot.high == pytest.approx(delta.high, abs=0.006)
    assert boot.better


def test_bootstrap_is_reproducible_and_shares_users_across_metrics() -> None:
    rng = np.random.default_rng(3)
    a = [Sample(rng.random(100), np.ones(100)), Sample(rng.random(100), (rng.random(100) < 0.5).astype(float))]
    b = [Sample(rng.random(90), np.ones(90)), Sample(rng.random(90), (rng.random(90) < 0.5).astype(float))]
    first = bootstrap_differences(a, b, seed=9, replicates=300)
    assert first == bootstrap_differences(a, b, seed=9, replicates=300)
    assert first != bootstrap_differences(a, b, seed=10, replicates=300)
    assert all(d.low <= d.relative <= d.high for d in first)


def test_bootstrap_of_an_empty_arm_is_undefined() -> None:
    [diff] = bootstrap_differences([Sample([], [])], [Sample([1.0], [1.0])])
    assert math.isnan(diff.relative) and math.isnan(diff.low)


def test_sample_ratio_mismatch_by_hand() -> None:
    # 550 / 450 for 50 %: expected 500 / 500, chi2 = 50^2/500 * 2 = 10, p = 0.00157 > 0.001: no mismatch
    ok = sample_ratio(550, 450, 0.5)
    assert ok.chi2 == pytest.approx(10.0) and ok.p_value == pytest.approx(0.0015654, rel=1e-4) and not ok.mismatch
    # 560 / 440: chi2 = 60^2/500 * 2 = 14.4, p = 0.000148: mismatch
    assert sample_ratio(560, 440, 0.5).mismatch
    # 9000 / 1000 for 10 %: exactly as planned
    exact = sample_ratio(9000, 1000, 0.1)
    assert exact.chi2 == 0.0 and exact.p_value == 1.0
    assert not sample_ratio(0, 0, 0.1).mismatch


def test_users_needed_by_hand() -> None:
    # 50/50, per-user variance 1, mean 1, effect 10 %: n = 2 (1.96 + 0.8416)^2 / 0.1^2 = 1569.8 -> 1570 per arm
    assert users_needed(1.0, 1.0, 0.1, 0.5) == (1570, 1570)
    # 10 % share: N = 7.849 * (1/0.9 + 1/0.1) / 0.01 = 8721.1 -> 7849 control, 873 challenger (rounded up)
    assert users_needed(1.0, 1.0, 0.1, 0.1) == (7849, 873)
    # doubling the effect needs a quarter of the users
    assert users_needed(4.0, 2.0, 0.2, 0.5) == (393, 393)  # V / mean^2 = 1, effect 0.2: 1569.8 / 4 = 392.4
    with pytest.raises(ValueError):
        users_needed(1.0, 0.0, 0.1, 0.5)


def test_difference_flags() -> None:
    assert Difference(0.1, 0.01, 0.2).better and not Difference(0.1, 0.01, 0.2).worse
    assert Difference(-0.1, -0.2, -0.01).worse
    assert not Difference(math.nan, math.nan, math.nan).better


def test_no_variance_from_a_single_user_in_the_denominator() -> None:
    # one user rated (8 over 1 rating), the other never did: a spread cannot be read from one user
    assert math.isnan(Sample([8.0, 0.0], [1.0, 0.0]).per_user_variance())
    assert math.isnan(delta_difference(Sample([8.0, 0.0], [1.0, 0.0]), Sample([10.0, 9.0], [1.0, 1.0])).low)
