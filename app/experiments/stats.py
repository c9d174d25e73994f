"""Statistics of a two-arm experiment as small pure functions (numpy/scipy only).

Every metric is a ratio of per-user sums, R = sum(y) / sum(x) over an arm's
users (a per-user mean has x = 1). Compared by the relative difference
d = R_challenger / R_control - 1 with a 95 % interval from
- the delta method (ratio metrics): Var(R) ~ Var(y - R x) / (n mean(x)^2) per arm,
  Var(d) ~ Var(R_b) / R_a^2 + R_b^2 Var(R_a) / R_a^4;
- a bootstrap over users (means): the Poisson bootstrap (each user weighted by
  an independent Poisson(1) count, the large-sample equivalent of resampling
  users with replacement, and a matrix product instead of an index gather),
  percentile interval of d over the replicates, seeded so a report is reproducible.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

CONFIDENCE = 0.95
SRM_ALPHA = 0.001  # a sample-ratio test this unlikely under the planned share means the split is broken
POWER = 0.8
BOOTSTRAP_REPLICATES = 1_000
_CHUNK = 50  # bootstrap replicates per matrix product (bounds memory at _CHUNK x users)


def _z(confidence: float = CONFIDENCE) -> float:
    return float(sps.norm.ppf(0.5 + confidence / 2))


@dataclass(frozen=True)
class Sample:
    """One metric in one arm: per-user numerator and denominator."""

    num: np.ndarray
    den: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "num", np.asarray(self.num, dtype=float))
        object.__setattr__(self, "den", np.asarray(self.den, dtype=float))
        if self.num.shape != self.den.shape or self.num.ndim != 1:
            raise ValueError("numerator and denominator must be 1-d arrays of the same length")

    @property
    def users(self) -> int:
        return len(self.num)

    @property
    def value(self) -> float:
        """sum(num) / sum(den); NaN when there is nothing to divide by."""
        den = self.den.sum()
        return float(self.num.sum() / den) if den > 0 else math.nan

    def per_user_variance(self) -> float:
        """Var(y - R x) / mean(x)^2: n times the delta-method variance of R (NaN below 2 users
        who count in the denominator: one user's ratings say nothing about the spread)."""
        if (self.den > 0).sum() < 2:
            return math.nan
        residual = self.num - self.value * self.den
        return float(residual.var(ddof=1) / self.den.mean() ** 2)


@dataclass(frozen=True)
class Difference:
    """Relative difference challenger vs control and its 95 % interval (NaN when undefined)."""

    relative: float
    low: float
    high: float

    @property
    def better(self) -> bool:
        return self.low > 0

    @property
    def worse(self) -> bool:
        return self.high < 0


_UNDEFINED = Difference(math.nan, math.nan, math.nan)


def delta_difference(control: Sample, challenger: Sample, confidence: float = CONFIDENCE) -> Difference:
    """Relative difference of two ratio metrics with a delta-method interval."""
    ra, rb = control.value, challenger.value
    if not ra > 0 or math.isnan(rb):
        return _UNDEFINED
    d = rb / ra - 1.0
    var_a = control.per_user_variance() / control.users
    var_b = challenger.per_user_variance() / challenger.users
    if math.isnan(var_a) or math.isnan(var_b):
        return Difference(d, math.nan, math.nan)
    half = _z(confidence) * math.sqrt(var_b / ra**2 + rb**2 * var_a / ra**4)
    return Difference(d, d - half, d + half)


def _poisson_ratios(num: np.ndarray, den: np.ndarray, replicates: int, rng: np.random.Generator) -> np.ndarray:
    """(replicates, metrics) ratios of Poisson(1)-weighted sums of (users, metrics) columns."""
    out = np.empty((replicates, num.shape[1]))
    for start in range(0, replicates, _CHUNK):
        weights = rng.poisson(1.0, size=(min(_CHUNK, replicates - start), num.shape[0])).astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start : start + len(weights)] = (weights @ num) / (weights @ den)
    return out


def bootstrap_differences(
    control: list[Sample],
    challenger: list[Sample],
    seed: int = 0,
    replicates: int = BOOTSTRAP_REPLICATES,
    confidence: float = CONFIDENCE,
) -> list[Difference]:
    """Relative differences of several metrics, one shared bootstrap over users per arm.

    Samples of one arm must list the same users in the same order (a user's
    resampling weight is shared by all their metrics, as in resampling users).
    """
    if len(control) != len(challenger):
        raise ValueError("one control and one challenger sample per metric")
    if not control:
        return []
    rng = np.random.default_rng([seed, 13])
    ratios = []
    for arm in (control, challenger):
        if not arm[0].users:
            return [_UNDEFINED] * len(control)
        num = np.column_stack([s.num for s in arm])
        den = np.column_stack([s.den for s in arm])
        ratios.append(_poisson_ratios(num, den, replicates, rng))
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = ratios[1] / np.where(ratios[0] > 0, ratios[0], np.nan) - 1.0
    tail = 50.0 * (1.0 - confidence)
    out = []
    for k, (a, b) in enumerate(zip(control, challenger)):
        point = b.value / a.value - 1.0 if a.value > 0 else math.nan
        column = rel[:, k][np.isfinite(rel[:, k])]
        if math.isnan(point) or len(column) < replicates // 2:  # mostly empty resamples: no interval
            out.append(Difference(point, math.nan, math.nan))
            continue
        low, high = np.percentile(column, [tail, 100.0 - tail])
        out.append(Difference(point, float(low), float(high)))
    return out


@dataclass(frozen=True)
class SampleRatio:
    """Chi-square test of the arms' user counts against the planned share."""

    control: int
    challenger: int
    share: float
    chi2: float
    p_value: float

    @property
    def mismatch(self) -> bool:
        return self.p_value < SRM_ALPHA


def sample_ratio(control: int, challenger: int, share: float) -> SampleRatio:
    total = control + challenger
    if total == 0:
        return SampleRatio(control, challenger, share, 0.0, 1.0)
    expected = np.array([total * (1.0 - share), total * share])
    observed = np.array([control, challenger], dtype=float)
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    return SampleRatio(control, challenger, share, chi2, float(sps.chi2.sf(chi2, df=1)))


def users_needed(
    per_user_variance: float,
    mean: float,
    effect: float,
    share: float,
    confidence: float = CONFIDENCE,
    power: float = POWER,
) -> tuple[int, int]:
    """(control, challenger) users to detect a relative `effect` on a metric of this
    mean and per-user variance with a two-sided test at `confidence` and `power`.

    With n_b = share N and n_a = (1 - share) N, Var(d) ~ V / mean^2 (1/n_a + 1/n_b) must
    be (effect / (z_{1-a/2} + z_power))^2, so N = (z + z_p)^2 V (1/(1-s) + 1/s) / (effect mean)^2.
    """
    if not (per_user_variance >= 0 and mean > 0 and effect > 0 and 0 < share < 1):
        raise ValueError("need a variance >= 0, a positive mean and effect, and a share in (0, 1)")
    zz = (_z(confidence) + float(sps.norm.ppf(power))) ** 2
    total = zz * per_user_variance * (1.0 / (1.0 - share) + 1.0 / share) / (effect * mean) ** 2
    return math.ceil(total * (1.0 - share)), math.ceil(total * share)
