"""Item-kNN: cosine similarity between films' viewer sets, `neighbours` kept per film.

Cheap at any catalogue size (implicit's sparse all-pairs kNN: ~3 s for 5k
films and ~6 s extrapolated for 20k at 100k users), so it covers the whole
catalogue where EASE covers the head. Its main use is "similar to recent
plays": `recommend_rows` over a user's last films. A user's score for a film
is the summed similarity to their history; films with no similarity to any
of it get none (the list is shorter rather than padded with noise).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from implicit.nearest_neighbours import all_pairs_knn

from app.recsys.models.base import get_csr, put_csr
from app.recsys.models.itemitem import ItemItemRecommender

DEFAULT_NEIGHBOURS = 200


class ItemKNNRecommender(ItemItemRecommender):
    """Cosine item-item neighbours; score = history row x similarity (top `neighbours` per film)."""

    name = "item_knn"

    def __init__(self, neighbours: int = DEFAULT_NEIGHBOURS) -> None:
        super().__init__()
        if neighbours < 1:
            raise ValueError("neighbours must be >= 1")
        self.neighbours = int(neighbours)
        self.similarity = sp.csr_matrix((0, 0), dtype=np.float32)

    def params(self) -> dict[str, Any]:
        return {"neighbours": self.neighbours}

    def _fit_items(self, history: sp.csr_matrix) -> None:
        # cosine = dot products of the films' unit-length viewer columns (what implicit's
        # CosineRecommender does, without its COO round trip); K + 1: the film itself is counted
        norms = np.sqrt(np.bincount(history.indices, weights=history.data.astype(np.float64) ** 2,
                                    minlength=history.shape[1]))
        unit = sp.csr_matrix(history.multiply(1.0 / np.where(norms > 0, norms, 1.0)[None, :]), dtype=np.float64)
        similarity = sp.csr_matrix(
            all_pairs_knn(unit, self.neighbours + 1, show_progress=False, num_threads=0), dtype=np.float32)
        similarity.setdiag(0.0)
        similarity.eliminate_zeros()
        self._set(similarity)

    def _set(self, similarity: sp.csr_matrix) -> None:
        self.similarity = similarity
        self.columns = np.arange(similarity.shape[1], dtype=np.int64)

    def _scores(self, rows: sp.csr_matrix) -> np.ndarray:
        return _dense_or_none((rows @ self.similarity).tocoo(), rows.shape[0], len(self.columns))

    def _item_scores(self, item_indices: np.ndarray) -> np.ndarray:
        return _dense_or_none(self.similarity[item_indices].tocoo(), len(item_indices), len(self.columns))

    def _arrays(self) -> dict[str, np.ndarray]:
        arrays: dict[str, np.ndarray] = {}
        put_csr(arrays, "similarity", self.similarity)
        return arrays

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self._set(get_csr(arrays, "similarity"))


def _dense_or_none(scores: sp.coo_matrix, rows: int, columns: int) -> np.ndarray:
    """Dense block of a sparse one, -inf (no evidence) where nothing is stored."""
    out = np.full((rows, columns), -np.inf, dtype=np.float32)
    out[scores.row, scores.col] = scores.data
    return out
