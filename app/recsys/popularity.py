"""Non-personalised baselines: Popular (distinct users in a window) and Trending (time-decayed).

They are the cold-start answer in serving and the bar ALS must clear in the
retrain gate. Both score items once at fit time; recommending is masking each
user's seen items out of that one ranking.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Self

import numpy as np
import scipy.sparse as sp

from app.recsys.base import check_fitted, check_indices, read_model, write_model
from app.recsys.dataset import DAY_S, Dataset
from app.recsys.idmap import IdMap
from app.recsys.topn import pad_ranked, top_n

# Rows scored at once: bounds the dense (rows x items) block to ~16 MB of float32.
_BLOCK_CELLS = 1 << 22


class _ItemScoreRecommender:
    """Shared mechanics: one score per item, ranked per user minus the user's seen items."""

    name = "item-score"

    def __init__(self) -> None:
        self.users = IdMap.empty()
        self.items = IdMap.empty()
        self.item_scores = np.zeros(0, dtype=np.float32)

    def fit(self, dataset: Dataset) -> Self:
        """Item score = sum over the item's users of the per-(user, item) weight."""
        self.users, self.items = dataset.users, dataset.items
        self.item_scores = np.bincount(
            dataset.matrix.indices, weights=self._pair_weights(dataset), minlength=dataset.shape[1]
        ).astype(np.float32)
        return self

    def _pair_weights(self, dataset: Dataset) -> np.ndarray:
        """One weight per stored (user, item) pair, aligned with `dataset.matrix.data`."""
        raise NotImplementedError

    def recommend(
        self, user_indices: np.ndarray, n: int, seen: sp.csr_matrix | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-n by item score; `seen` rows (indexed by user index) are filtered out."""
        check_fitted(self)
        users = check_indices(user_indices, seen.shape[0] if seen is not None else len(self.users), "user")
        n_items = len(self.items)
        ids = np.empty((len(users), n), dtype=np.int64)
        scores = np.empty((len(users), n), dtype=np.float32)
        block = max(1, _BLOCK_CELLS // max(n_items, 1))
        for start in range(0, len(users), block):
            rows = users[start : start + block]
            dense = np.tile(self.item_scores, (len(rows), 1))
            if seen is not None:
                sub = seen[rows]
                dense[np.repeat(np.arange(len(rows)), np.diff(sub.indptr)), sub.indices] = -np.inf
            ids[start : start + block], scores[start : start + block] = top_n(dense, n)
        return ids, scores

    def similar_items(self, item_indices: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Not personalised: the top items, minus the item itself."""
        check_fitted(self)
        items = check_indices(item_indices, len(self.items), "item")
        best_ids, best_scores = top_n(self.item_scores[None, :], n + 1)
        keep = best_ids != items[:, None]  # (items, n+1): drop self where present
        order = np.argsort(~keep, axis=1, kind="stable")
        ids = np.take_along_axis(np.broadcast_to(best_ids, keep.shape), order, axis=1)[:, :n]
        scores = np.take_along_axis(np.broadcast_to(best_scores, keep.shape), order, axis=1)[:, :n]
        return pad_ranked(ids, scores, n)

    def top(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-n (item indices, scores) for anybody: the cold-start list."""
        check_fitted(self)
        ids, scores = top_n(self.item_scores[None, :], n)
        return ids[0], scores[0]

    def params(self) -> dict[str, Any]:
        raise NotImplementedError

    def save(self, directory: Path) -> None:
        write_model(directory, self, {"item_scores": self.item_scores})

    @classmethod
    def load(cls, directory: Path) -> Self:
        saved = read_model(directory, cls.name)
        model = cls(**saved.params)
        model.users, model.items = saved.users, saved.items
        model.item_scores = saved.arrays["item_scores"].astype(np.float32)
        return model


class PopularRecommender(_ItemScoreRecommender):
    """Items ranked by distinct users whose latest event is within `window_days` of the newest event."""

    name = "popular"

    def __init__(self, window_days: float | None = None) -> None:
        super().__init__()
        if window_days is not None and window_days <= 0:
            raise ValueError(f"window_days must be > 0 or None, got {window_days}")
        self.window_days = window_days

    def _pair_weights(self, dataset: Dataset) -> np.ndarray:
        if self.window_days is None:
            return np.ones(len(dataset.last_ts))
        return (dataset.last_ts >= dataset.now - self.window_days * DAY_S).astype(np.float64)

    def params(self) -> dict[str, Any]:
        return {"window_days": self.window_days}


class TrendingRecommender(_ItemScoreRecommender):
    """Items ranked by distinct users, each counting 2^(-age / half_life) by the age of their latest event."""

    name = "trending"

    def __init__(self, half_life_days: float = 7.0) -> None:
        super().__init__()
        if half_life_days <= 0:
            raise ValueError(f"half_life_days must be > 0, got {half_life_days}")
        self.half_life_days = half_life_days

    def _pair_weights(self, dataset: Dataset) -> np.ndarray:
        age_days = np.maximum(dataset.now - dataset.last_ts, 0.0) / DAY_S
        return np.exp2(-age_days / self.half_life_days)

    def params(self) -> dict[str, Any]:
        return {"half_life_days": self.half_life_days}
