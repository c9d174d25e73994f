"""Request-time fold-in: a user vector from a few (film, confidence) pairs.

A fresh user has no row in the trained model; solving the implicit-ALS user
step against the published item factors gives that row in well under a
millisecond, so the web service can personalise from the first clicks without
a retrain. Pure numpy: the web process must not need implicit.

Confidence convention (same as implicit's CPU ALS): c = alpha * weight,
preference 1 for every given item, 0 (confidence 1) elsewhere. Training
divides the raw pair weights by their mean (`ALSRecommender.weight_scale`), so
the `alpha` published with the factors is the model's confidence per unit of
RAW weight (`confidence_scale` = alpha x weight scale): fold-in of raw
weights then applies exactly the training scale. Blobs published before the
scale existed carry the plain alpha, which was the same thing (scale 1), so
the format did not change; `weight_scale` and `model_alpha` are stored beside
it for operators only.

    x_u = (YtY + Yu^T (Cu - I) Yu + reg I)^-1  Yu^T Cu p_u
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from app.recsys.data.idmap import IdMap
from app.recsys.models.topn import top_n


@runtime_checkable
class FactorModel(Protocol):
    """What `pack_factors` needs from a trained model (ALSRecommender has it)."""

    items: IdMap
    item_factors: np.ndarray
    regularization: float
    alpha: float
    weight_scale: float


def gram(item_factors: np.ndarray) -> np.ndarray:
    """YtY, shared by every fold-in: computed once per published model."""
    y = np.asarray(item_factors, dtype=np.float64)
    return y.T @ y


def fold_in(
    item_factors: np.ndarray,
    gram: np.ndarray,
    item_indices: np.ndarray,
    confidences: np.ndarray,
    regularization: float,
) -> np.ndarray:
    """Closed-form ALS user solve; `confidences` are already alpha-scaled, duplicates are summed."""
    item_indices = np.asarray(item_indices, dtype=np.int64)
    confidences = np.asarray(confidences, dtype=np.float64)
    if item_indices.shape != confidences.shape or item_indices.ndim != 1:
        raise ValueError("item_indices and confidences must be 1-d arrays of the same length")
    if item_indices.size and (item_indices.min() < 0 or item_indices.max() >= len(item_factors)):
        raise IndexError("item index out of range of the item factors")
    if confidences.size and confidences.min() <= 0:
        raise ValueError("confidences must be > 0")
    if len(set(item_indices.tolist())) == len(item_indices):  # the usual case: skip np.unique (~10 us)
        items, conf = item_indices, confidences
    else:
        items, inverse = np.unique(item_indices, return_inverse=True)
        conf = np.bincount(inverse.ravel(), weights=confidences, minlength=len(items))
    yu = item_factors[items].astype(np.float64)
    a = (yu.T * (conf - 1.0)) @ yu
    a += gram
    a.flat[:: len(a) + 1] += regularization  # + reg * I without building I
    b = yu.T @ conf
    return np.linalg.solve(a, b).astype(np.float32)


@dataclass(frozen=True, eq=False)
class FoldInModel:
    """Item factors as published to Redis, ready for request-time fold-in."""

    items: IdMap
    item_factors: np.ndarray
    gram: np.ndarray
    regularization: float
    alpha: float  # confidence per unit of raw weight (see the module doc)

    def user_vector(self, film_ids: np.ndarray, confidences: np.ndarray) -> np.ndarray | None:
        """Folded-in user vector from raw weights; None when no film is known to the model."""
        return self._vector(self.items.to_index(film_ids), confidences)

    def _vector(self, idx: np.ndarray, confidences: np.ndarray) -> np.ndarray | None:
        """`user_vector` of films already mapped to indices (recommend reuses them to exclude)."""
        conf = np.asarray(confidences, dtype=np.float64)
        known = (idx >= 0) & (conf > 0)
        if not known.any():
            return None
        return fold_in(self.item_factors, self.gram, idx[known], self.alpha * conf[known], self.regularization)

    def recommend(
        self,
        film_ids: np.ndarray,
        confidences: np.ndarray,
        n: int,
        exclude: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-n (film ids, scores), only real entries (may be shorter than n, empty if nothing known).

        `exclude` are film ids never to return; by default the films folded in.
        """
        given = self.items.to_index(film_ids)
        vector = self._vector(given, confidences)
        if vector is None:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        scores = self.item_factors @ vector
        drop = given if exclude is None else self.items.to_index(exclude)
        scores[drop[drop >= 0]] = -np.inf
        idx, top = top_n(scores[None, :], n)
        valid = idx[0] >= 0
        return self.items.to_external(idx[0][valid]), top[0][valid]


def pack_factors(model: FactorModel) -> bytes:
    """npz bytes for Redis key `recs:{v}:factors` (no pickle: safe to load in the web)."""
    buf = io.BytesIO()
    np.savez(
        buf,
        item_ids=model.items.external,
        item_factors=np.asarray(model.item_factors, dtype=np.float32),
        regularization=np.float64(model.regularization),
        alpha=np.float64(model.alpha * model.weight_scale),
        weight_scale=np.float64(model.weight_scale),
        model_alpha=np.float64(model.alpha),
    )
    return buf.getvalue()


def unpack_factors(raw: bytes) -> FoldInModel:
    """Inverse of `pack_factors`; precomputes the gram matrix once."""
    with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
        items = IdMap(npz["item_ids"])
        factors = npz["item_factors"].astype(np.float32)
        if factors.ndim != 2 or len(factors) != len(items):
            raise ValueError(f"factors shape {factors.shape} does not match {len(items)} item ids")
        return FoldInModel(
            items=items,
            item_factors=factors,
            gram=gram(factors),
            regularization=float(npz["regularization"]),
            alpha=float(npz["alpha"]),
        )
