"""Paired bootstrap over users: how sure is "model A scores better than model B on this holdout"?

Both models are scored per user on the same holdout, so the comparison is
made on per-user differences d_u = a_u - b_u. Resampling users with
replacement and taking the mean of d each time gives the spread that the
choice of users alone would cause; its 2.5% and 97.5% percentiles are the
95% interval of the mean difference. Pairing removes the between-user
variance both models share (some users are easy, some hard), which is most
of it: a paired interval is much narrower than comparing two means.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

RESAMPLES = 2_000
CONFIDENCE = 0.95
_CHUNK = 100  # resamples drawn at once: bounds memory to CHUNK x users indices


@dataclass(frozen=True)
class Difference:
    """Mean per-user difference (A - B) and its bootstrap interval [low, high] over `users` users."""

    mean: float
    low: float
    high: float
    users: int

    def __post_init__(self) -> None:
        if not self.low <= self.high:
            raise ValueError(f"need low <= high, got {self.low}, {self.high}")

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.mean:+.4f} [{self.low:+.4f}, {self.high:+.4f}]"


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, resamples: int = RESAMPLES, confidence: float = CONFIDENCE, seed: int = 0
) -> Difference:
    """Mean of `a - b` with its percentile bootstrap interval; `a[i]` and `b[i]` are one user's scores.

    Deterministic for a given seed. Raises on no users: there is nothing to tell.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"need two 1-d arrays of one score per user, got shapes {a.shape} and {b.shape}")
    if not len(a):
        raise ValueError("no users to compare on")
    if resamples < 1 or not 0 < confidence < 1:
        raise ValueError("need resamples >= 1 and 0 < confidence < 1")
    diff = a - b
    rng = np.random.default_rng(seed)
    means = np.empty(resamples, dtype=np.float64)
    for start in range(0, resamples, _CHUNK):
        stop = min(start + _CHUNK, resamples)
        means[start:stop] = diff[rng.integers(0, len(diff), size=(stop - start, len(diff)))].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Difference(mean=float(diff.mean()), low=float(low), high=float(high), users=len(diff))
