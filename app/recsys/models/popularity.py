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

from app.recsys.models.base import check_fitted, check_indices, read_model, write_model
from app.recsys.data.dataset import DAY_S, Dataset
from app.recsys.data.idmap import IdMap
from app.recsys.models.topn import pad_ranked, top_n

# Rows ranked at once; a row costs n + (most excluded items in its block), not
# the catalog; the cell cap bounds the block's mask and sort to ~100 MB.
_BLOCK_ROWS = 4096
_BLOCK_CELLS = 1 << 23


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
        excluded = seen[users] if seen is not None else sp.csr_matrix((len(users), len(self.items)))
        return self._ranked_excluding(excluded, n)

    def similar_items(self, item_indices: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Not personalised: the top items, minus the item itself."""
        check_fitted(self)
        items = check_indices(item_indices, len(self.items), "item")
        itself = sp.csr_matrix(
            (np.ones(len(items)), items, np.arange(len(items) + 1)), shape=(len(items), len(self.items))
        )
        return self._ranked_excluding(itself, n)

    def _ranked_excluding(self, excluded: sp.csr_matrix, n: int,
                          order: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Per row of `excluded`, the first n items of the one global ranking that the row does not hold
        (`order`: that ranking, items best first, when the caller keeps it; else sorted here).

        Only the first n + (most items excluded in one row) ranks can be
        needed, so a block costs rows x that, never rows x catalog.
        """
        if order is None:
            order = np.argsort(-self.item_scores, kind="stable")
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order))
        ids = np.empty((excluded.shape[0], n), dtype=np.int64)
        scores = np.empty((excluded.shape[0], n), dtype=np.float32)
        lengths = np.diff(excluded.indptr)
        start = 0
        while start < excluded.shape[0]:
            stop = min(excluded.shape[0], start + _BLOCK_ROWS)
            width = min(len(order), n + int(lengths[start:stop].max(initial=0)))
            if (stop - start) * width > _BLOCK_CELLS:  # a heavy user in the block: fewer rows
                stop = start + max(1, _BLOCK_CELLS // width)
                width = min(len(order), n + int(lengths[start:stop].max(initial=0)))
            block = excluded if (start, stop) == (0, excluded.shape[0]) else excluded[start:stop]
            entry_rank = rank[block.indices]
            in_window = entry_rank < width
            mask = np.zeros((stop - start, width), dtype=bool)
            rows = np.repeat(np.arange(stop - start), np.diff(block.indptr))
            mask[rows[in_window], entry_rank[in_window]] = True
            first = np.argsort(mask, axis=1, kind="stable")[:, :n]  # ranks not excluded, best first
            first_scores = np.where(np.take_along_axis(mask, first, axis=1), -np.inf, self.item_scores[order[first]])
            ids[start:stop], scores[start:stop] = pad_ranked(order[first], first_scores, n)
            start = stop
        return ids, scores

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
