"""Shared mechanics of the item-item models (EASE, item-kNN): a user's score for an item is
their history row times an item x item weight matrix.

The model keeps the binary history it was fitted on (users x items), so
`recommend` works for the dataset's users like ALS's does; `recommend_rows`
scores any other history (e.g. a user's last few plays with decayed weights,
the "similar to recent plays" candidates) the same way.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Self

import numpy as np
import scipy.sparse as sp

from app.recsys.data.dataset import Dataset
from app.recsys.data.idmap import IdMap
from app.recsys.models.base import binary, check_fitted, check_indices, get_csr, put_csr, read_model, write_model
from app.recsys.models.topn import block_rows, top_n_excluding


class ItemItemRecommender:
    """Subclasses set `name`, `params()` and the item x item part (`_fit_items`, `_scores`, `_item_scores`)."""

    name = "item-item"

    def __init__(self) -> None:
        self.users = IdMap.empty()
        self.items = IdMap.empty()
        self.history = sp.csr_matrix((0, 0), dtype=np.float32)
        # The items scores are computed for (column j of a score block is item columns[j]).
        self.columns = np.zeros(0, dtype=np.int64)

    def params(self) -> dict[str, Any]:
        raise NotImplementedError

    def fit(self, dataset: Dataset) -> Self:
        """Learn the item x item weights from who met which item (the weights' size is ignored)."""
        if dataset.matrix.nnz == 0:
            raise ValueError(f"cannot fit {self.name} on an empty matrix")
        self.users, self.items = dataset.users, dataset.items
        self.history = binary(dataset.matrix)
        self._fit_items(self.history)
        return self

    def _fit_items(self, history: sp.csr_matrix) -> None:
        raise NotImplementedError

    def _scores(self, rows: sp.csr_matrix) -> np.ndarray:
        """Dense (rows x len(columns)) scores of history rows; -inf = no evidence."""
        raise NotImplementedError

    def _item_scores(self, item_indices: np.ndarray) -> np.ndarray:
        """Dense (items x len(columns)) similarity of the given items to every column."""
        raise NotImplementedError

    def recommend(
        self, user_indices: np.ndarray, n: int, seen: sp.csr_matrix | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-n item indices/scores for the fitted users; `seen` rows are indexed by user index."""
        check_fitted(self)
        users = check_indices(user_indices, len(self.users), "user")
        return self.recommend_rows(self.history[users], n, None if seen is None else sp.csr_matrix(seen)[users])

    def recommend_rows(
        self, rows: sp.csr_matrix, n: int, exclude: sp.csr_matrix | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-n for arbitrary history rows (any x items, weights kept); `exclude` has one row per row."""
        check_fitted(self)
        rows = sp.csr_matrix(rows, dtype=np.float32)
        if rows.shape[1] != len(self.items):
            raise ValueError(f"history rows must have {len(self.items)} columns, got {rows.shape[1]}")
        if exclude is not None and exclude.shape != rows.shape:
            raise ValueError(f"exclude must be {rows.shape}, got {exclude.shape}")
        return self._ranked(rows.shape[0], n, lambda s: self._scores(rows[s]), exclude)

    def similar_items(self, item_indices: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Items with the largest item-item weight from each given item, never the item itself."""
        check_fitted(self)
        items = check_indices(item_indices, len(self.items), "item")
        itself = sp.csr_matrix(
            (np.ones(len(items), dtype=np.float32), items, np.arange(len(items) + 1)), shape=(len(items), len(self.items))
        )
        return self._ranked(len(items), n, lambda s: self._item_scores(items[s]), itself)

    def _ranked(self, count: int, n: int, scores_of, exclude: sp.csr_matrix | None) -> tuple[np.ndarray, np.ndarray]:
        """Top-n of `count` rows, scored a bounded block of rows at a time."""
        ids = np.full((count, n), -1, dtype=np.int64)
        top = np.full((count, n), -np.inf, dtype=np.float32)
        step = block_rows(len(self.columns))
        for start in range(0, count, step):
            block = slice(start, min(count, start + step))
            ids[block], top[block] = top_n_excluding(
                scores_of(block), n, None if exclude is None else exclude[block], self.columns)
        return ids, top

    def _arrays(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def save(self, directory: Path) -> None:
        arrays = self._arrays()
        put_csr(arrays, "history", self.history)
        write_model(directory, self, arrays)

    @classmethod
    def load(cls, directory: Path) -> Self:
        saved = read_model(directory, cls.name)
        model = cls(**saved.params)
        model.users, model.items = saved.users, saved.items
        model.history = get_csr(saved.arrays, "history")
        model._restore(saved.arrays)
        return model
