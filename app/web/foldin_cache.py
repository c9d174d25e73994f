"""Request-time fold-in for users the served model has never seen, cached.

A fresh user's recent watches change only when they watch something, while
every page view asks for recommendations again: results are kept per
(recent watches, limit) in an LRU that lives and dies with the served version
(a new version builds a new ranker), so repeat requests cost a dict lookup.

A miss gives the same answer as `FoldInModel.recommend` (the ALS user solve,
then every film scored), for less work:
- the solve uses `(YtY + reg I)^-1`, computed once per version: with k films
  folded in, `x = P^T (c - (I + D K)^-1 D K c)` where `P = Yu (YtY + reg I)^-1`,
  `K = P Yu^T` and `D = diag(c - 1)` (Woodbury), a k x k system instead of a
  factors x factors one;
- every film is still scored (one float32 matvec), but the top-n is selected
  among the films scoring at least the n-th best of a few candidates (the
  films of largest norm): those always include the true top n, and they are
  a few dozen instead of an argpartition over the whole catalog. Scoring only
  the candidates could not be exact: the Cauchy-Schwarz bound never proved a
  candidate top-n complete on real ALS factors (docs/serving.md).
"""
from __future__ import annotations

import functools
import logging
from collections import Counter

import numpy as np

from app.recsys.models.foldin import FoldInModel, unpack_factors

log = logging.getLogger(__name__)

CACHE_SIZE = 8192
CANDIDATES = 256  # films of largest norm whose scores set the selection threshold
Ranked = tuple[list[int], list[float]]


class FoldInRanker:
    """Top-n films for a list of recent watches, from one version's item factors."""

    def __init__(self, model: FoldInModel) -> None:
        self.model = model
        factors = model.item_factors
        regularised = model.gram + model.regularization * np.eye(factors.shape[1])
        self._inverse = np.linalg.inv(regularised)
        self._candidates = np.argsort(-np.linalg.norm(factors, axis=1), kind="stable")[:CANDIDATES]
        # film id -> row: a dict lookup per recent film beats IdMap.to_index's array work (~25 us) for a handful
        self._rows = dict(zip(model.items.external.tolist(), range(len(model.items))))
        self.top = functools.lru_cache(maxsize=CACHE_SIZE)(self._top)

    def user_vector(self, indices: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """The ALS user solve for films at `indices` with raw `weights` (the Woodbury form above)."""
        c = self.model.alpha * weights
        yu = self.model.item_factors[indices].astype(np.float64)
        p = yu @ self._inverse
        dk = (c - 1.0)[:, None] * (p @ yu.T)
        z = c - np.linalg.solve(np.eye(len(c)) + dk, dk @ c)
        return (z @ p).astype(np.float32)

    def _top(self, recent: tuple[int, ...], limit: int) -> Ranked:
        """Uncached fold-in; callers use `top` (results are shared: never mutate them).

        `recent`: film ids newest first, repeats allowed; a film's weight is how often it appears."""
        rows, weights = [], []
        for film_id, count in Counter(recent).items():
            row = self._rows.get(film_id)
            if row is not None:  # films the version does not know are left out
                rows.append(row)
                weights.append(float(count))
        if not rows:
            return [], []
        given = np.array(rows)
        scores = self.model.item_factors @ self.user_vector(given, np.array(weights))
        scores[given] = -np.inf  # never the films folded in
        n = min(limit, len(scores) - len(given))
        if n <= 0:
            return [], []
        candidates = scores[self._candidates]
        threshold = -np.inf
        if len(candidates) > n:
            threshold = np.partition(candidates, len(candidates) - n)[len(candidates) - n]
        # Holds the true top n, since n candidates reach the threshold.
        pool = np.flatnonzero(scores >= threshold) if np.isfinite(threshold) else np.flatnonzero(scores > -np.inf)
        best = pool[np.argsort(-scores[pool], kind="stable")[:n]]
        return self.model.items.external[best].tolist(), scores[best].tolist()


def load_ranker(raw: bytes | None) -> FoldInRanker | None:
    """Decode `recs:{v}:factors` (None when absent or unreadable: fold-in users then get trending)."""
    if not raw:
        return None
    try:
        model = unpack_factors(raw)
        # Factors stay float32 as published: scoring every film is one float32 BLAS
        # matvec (~20 us at 5k films x 64), ~4x faster than on a float64 copy.
        return FoldInRanker(model)
    except Exception:  # a broken blob must not stop serving the rest of the version
        log.exception("cannot decode fold-in factors; fold-in disabled for this version")
        return None
