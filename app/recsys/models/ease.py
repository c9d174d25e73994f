"""EASE (Steck 2019): a closed-form item x item linear model over the most-watched films.

    B = I - P diag(1 / diag P),   P = (X'X + lambda I)^-1,   score(u) = x_u B

X is the binary users x items history. Its fit is one dense inverse of an
items x items matrix, so its cost is cubic in the films kept: ~5 s at 5,000
films, ~20 s at 10,000 and an extrapolated ~160 s (and 1.6 GB for B) at 20,000
on one core (docs/models.md). It is therefore fitted on the `max_items` films
with the most viewers: pruning to the top 1-4k films cost <= 1.4% NDCG@10 in
every measured case. Films outside get no item-item scores (ALS and item-kNN
cover the tail). `regularization` is lambda, searched by the retrain's tuning.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from app.recsys.models.itemitem import ItemItemRecommender

DEFAULT_REGULARIZATION = 300.0  # won 3 of 4 dataset x protocol cells of {30 .. 3000} (docs/models.md)
DEFAULT_MAX_ITEMS = 5_000


class EASERecommender(ItemItemRecommender):
    """Item-item model of the `max_items` most-viewed films: score = history row x B."""

    name = "ease"

    def __init__(self, regularization: float = DEFAULT_REGULARIZATION, max_items: int = DEFAULT_MAX_ITEMS) -> None:
        super().__init__()
        if regularization <= 0 or max_items < 1:
            raise ValueError("regularization must be > 0 and max_items >= 1")
        self.regularization = float(regularization)
        self.max_items = int(max_items)
        self.weights = np.zeros((0, 0), dtype=np.float32)  # B over `columns`
        self._select: sp.csr_matrix | None = None

    def params(self) -> dict[str, Any]:
        return {"regularization": self.regularization, "max_items": self.max_items}

    def _fit_items(self, history: sp.csr_matrix) -> None:
        viewers = np.bincount(history.indices, minlength=history.shape[1])
        kept = np.sort(np.argsort(-viewers, kind="stable")[: self.max_items])
        x = history[:, kept]
        gram = (x.T @ x).toarray().astype(np.float32)
        self._set(kept, _ease_weights(gram, self.regularization))

    def _set(self, kept: np.ndarray, weights: np.ndarray) -> None:
        self.columns, self.weights = kept.astype(np.int64), np.ascontiguousarray(weights, dtype=np.float32)
        # history rows (all items) -> kept columns, as one sparse product
        self._select = sp.csr_matrix(
            (np.ones(len(kept), dtype=np.float32), (kept, np.arange(len(kept)))), shape=(len(self.items), len(kept))
        )

    def _scores(self, rows: sp.csr_matrix) -> np.ndarray:
        return np.asarray((rows @ self._select) @ self.weights, dtype=np.float32)

    def _item_scores(self, item_indices: np.ndarray) -> np.ndarray:
        position = np.full(len(self.items), -1, dtype=np.int64)
        position[self.columns] = np.arange(len(self.columns))
        found = position[item_indices]
        out = np.full((len(item_indices), len(self.columns)), -np.inf, dtype=np.float32)
        out[found >= 0] = self.weights[found[found >= 0]]
        return out

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"columns": self.columns, "weights": self.weights}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self._set(arrays["columns"], arrays["weights"])


def _ease_weights(gram: np.ndarray, regularization: float) -> np.ndarray:
    """B from the items' co-occurrence counts X'X (overwritten): Cholesky factor and inverse (LAPACK potrf/potri)."""
    gram.flat[:: len(gram) + 1] += regularization
    # the inverse is plain dense BLAS work: let it use every core (the retrain holds BLAS at 1 for implicit)
    with threadpool_limits(os.cpu_count() or 1, "blas"):
        potrf, potri = scipy.linalg.lapack.get_lapack_funcs(("potrf", "potri"), (gram,))
        factor, info = potrf(gram, lower=False, overwrite_a=True)
        if info != 0:
            raise np.linalg.LinAlgError(f"EASE: X'X + lambda I is not positive definite (potrf info {info})")
        inverse, info = potri(factor, lower=False, overwrite_c=True)
        if info != 0:
            raise np.linalg.LinAlgError(f"EASE: cannot invert X'X + lambda I (potri info {info})")
    inverse = np.triu(inverse) + np.triu(inverse, 1).T
    weights = -inverse / np.diag(inverse)[None, :]
    weights.flat[:: len(weights) + 1] = 0.0
    return weights
