"""Top-K ranking metrics with binary relevance, as value objects.

Each metric is a frozen dataclass holding its K, so the set of metrics a run
used is data (it goes into `model_runs`), and `compute_metrics` evaluates any
set over one (recommended, relevant) pair of arrays. Definitions:

- recall@K   = hits in top K / min(|test|, K)
- NDCG@K     = DCG / IDCG, DCG = sum_i rel_i / log2(i + 1) (i from 1),
               IDCG over min(|test|, K) relevant items at the top
- MAP@K      = sum_i precision@i * rel_i / min(|test|, K)
- hit rate@K = 1 if any hit in top K
- coverage@K = distinct items recommended in top K over all users / catalog size
- novelty@K  = mean over recommended items of -log2(popularity share), share =
               training users of the item / training users
Ranking metrics are averaged over users; users with no relevant item are skipped.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np


@dataclass(frozen=True)
class Metric:
    """A metric at cutoff K; `key` names it in result dicts (e.g. "ndcg@10")."""

    k: int
    name: ClassVar[str] = "metric"

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"{self.name}: k must be >= 1, got {self.k}")

    @property
    def key(self) -> str:
        return f"{self.name}@{self.k}"


@dataclass(frozen=True)
class RankingMetric(Metric):
    """A per-user metric of the hit pattern in the top K, averaged over users."""

    def per_user(self, hits: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
        """hits: bool (users, >=K) in rank order; n_relevant: (users,) > 0."""
        raise NotImplementedError

    def _top(self, hits: np.ndarray, n_relevant: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Hits cut to K columns (zero-padded if shorter) and the denominator min(|test|, K)."""
        top = np.zeros((len(hits), self.k), dtype=np.float64)
        width = min(self.k, hits.shape[1])
        top[:, :width] = hits[:, :width]
        return top, np.minimum(n_relevant, self.k).astype(np.float64)


@dataclass(frozen=True)
class Recall(RankingMetric):
    name: ClassVar[str] = "recall"

    def per_user(self, hits: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
        top, denom = self._top(hits, n_relevant)
        return top.sum(axis=1) / denom


@dataclass(frozen=True)
class NDCG(RankingMetric):
    name: ClassVar[str] = "ndcg"

    def per_user(self, hits: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
        top, denom = self._top(hits, n_relevant)
        discount = 1.0 / np.log2(np.arange(2, self.k + 2))
        ideal = np.cumsum(discount)[denom.astype(np.int64) - 1]
        return (top @ discount) / ideal


@dataclass(frozen=True)
class MAP(RankingMetric):
    name: ClassVar[str] = "map"

    def per_user(self, hits: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
        top, denom = self._top(hits, n_relevant)
        precision_at_i = np.cumsum(top, axis=1) / np.arange(1, self.k + 1)
        return (precision_at_i * top).sum(axis=1) / denom


@dataclass(frozen=True)
class HitRate(RankingMetric):
    name: ClassVar[str] = "hit_rate"

    def per_user(self, hits: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
        top, _ = self._top(hits, n_relevant)
        return (top.sum(axis=1) > 0).astype(np.float64)


@dataclass(frozen=True)
class CatalogMetric(Metric):
    """A metric of the recommended items as a whole (not per user)."""

    def value(self, recommended: np.ndarray) -> float:
        """recommended: item indices (users, >=K), -1 padded."""
        raise NotImplementedError

    def _top_items(self, recommended: np.ndarray) -> np.ndarray:
        top = recommended[:, : self.k]
        return top[top >= 0]


@dataclass(frozen=True)
class Coverage(CatalogMetric):
    """Share of the catalog that appears in anybody's top K."""

    n_items: int = field(kw_only=True)
    name: ClassVar[str] = "coverage"

    def value(self, recommended: np.ndarray) -> float:
        return len(np.unique(self._top_items(recommended))) / self.n_items if self.n_items else 0.0


@dataclass(frozen=True, eq=False)
class Novelty(CatalogMetric):
    """Mean self-information -log2(share of training users) of recommended items: higher = less obvious."""

    popularity_share: np.ndarray = field(kw_only=True)  # per item index, in (0, 1]
    name: ClassVar[str] = "novelty"

    def value(self, recommended: np.ndarray) -> float:
        items = self._top_items(recommended)
        if not items.size:
            return 0.0
        share = np.clip(self.popularity_share[items], np.finfo(np.float64).tiny, 1.0)
        return float(np.mean(-np.log2(share)))


def standard_metrics(k: int, n_items: int, popularity_share: np.ndarray) -> list[Metric]:
    """The metric set every evaluation reports."""
    return [Recall(k), NDCG(k), MAP(k), HitRate(k), Coverage(k, n_items=n_items), Novelty(k, popularity_share=popularity_share)]


def hit_matrix(recommended: np.ndarray, relevant: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(hits, n_relevant): hits[u, i] = recommended[u, i] is in relevant[u] (-1 padding never
    hits); n_relevant[u] = distinct relevant items of u.

    Vectorised as one sorted array of unique (user, item) keys and a searchsorted.
    """
    recommended = np.asarray(recommended, dtype=np.int64)
    if len(relevant) != len(recommended):
        raise ValueError(f"{len(recommended)} recommendation rows but {len(relevant)} relevant sets")
    lengths = [len(r) for r in relevant]
    if not sum(lengths):
        return np.zeros(recommended.shape, dtype=bool), np.zeros(len(relevant), dtype=np.int64)
    flat = np.concatenate([np.asarray(r, dtype=np.int64) for r in relevant])
    width = max(int(recommended.max(initial=0)), int(flat.max())) + 1
    keys = np.unique(np.repeat(np.arange(len(relevant)), lengths) * width + flat)
    n_relevant = np.bincount(keys // width, minlength=len(relevant))
    rec_keys = np.arange(len(recommended))[:, None] * width + recommended
    pos = np.minimum(np.searchsorted(keys, rec_keys), len(keys) - 1)
    return (recommended >= 0) & (keys[pos] == rec_keys), n_relevant


def ranking_values(
    recommended: np.ndarray, relevant: Sequence[np.ndarray], metrics: Sequence[Metric]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(users kept, per-user value of each ranking metric over the kept users).

    Kept: users with at least one relevant item (the others are skipped, as
    no ranking can score there). Ids may be indices or external ids, as long
    as both sides use the same; -1 is padding.
    """
    recommended = np.asarray(recommended, dtype=np.int64).reshape(len(relevant), -1)
    ordered = np.sort(recommended, axis=1)
    if ((ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)).any():
        raise ValueError("a recommendation row repeats an item: hits would be counted twice")
    hits, n_relevant = hit_matrix(recommended, relevant)
    keep = n_relevant > 0
    values = {m.key: m.per_user(hits[keep], n_relevant[keep]) for m in metrics if isinstance(m, RankingMetric)}
    return keep, values


def compute_metrics(
    recommended: np.ndarray, relevant: Sequence[np.ndarray], metrics: Sequence[Metric]
) -> dict[str, float]:
    """Every metric in `metrics` over users with at least one relevant item (others skipped)."""
    recommended = np.asarray(recommended, dtype=np.int64).reshape(len(relevant), -1)
    keep, per_user = ranking_values(recommended, relevant, metrics)
    return summarise(per_user, recommended[keep], metrics, int(keep.sum()))


def summarise(per_user: dict[str, np.ndarray], recommended: np.ndarray, metrics: Sequence[Metric],
              users: int) -> dict[str, float]:
    """Ranking metrics averaged over users, catalog metrics over `recommended` (item indices), and `users`."""
    out: dict[str, float] = {}
    for metric in metrics:
        if isinstance(metric, RankingMetric):
            out[metric.key] = float(per_user[metric.key].mean()) if users else 0.0
        elif isinstance(metric, CatalogMetric):
            out[metric.key] = metric.value(recommended)
        else:
            raise TypeError(f"not a ranking or catalog metric: {metric!r}")
    out["users"] = float(users)
    return out
