"""Implicit-feedback ALS (Hu, Koren, Volinsky 2008) over `implicit`'s CPU solver.

The CPU implementation is forced (no GPU on these machines, and results must
not depend on which build is installed). Recommending goes through implicit's
multithreaded batch top-k, which never materialises the users x items matrix.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Mapping, Self

import numpy as np
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from implicit.cpu.topk import topk
from threadpoolctl import ThreadpoolController, threadpool_limits

from app.recsys.models.base import check_fitted, check_indices, read_model, write_model
from app.recsys.data.dataset import Dataset
from app.recsys.models.foldin import fold_in, gram
from app.recsys.data.idmap import IdMap
from app.recsys.models.topn import mark_ranked, pad_ranked

# Defaults: the neutral point of the retrain's search (app/recsys/tuning), which
# replaces them in every tuned run. alpha applies to weights divided by their
# mean (below), so it means the same on any data; regularization = 8 x alpha:
# reg / alpha between 6 and 10 was best on every dataset and protocol measured
# (docs/models.md).
DEFAULT_FACTORS = 64
DEFAULT_ALPHA = 3.0
DEFAULT_REGULARIZATION = 8 * DEFAULT_ALPHA
DEFAULT_ITERATIONS = 15


def weight_scale(matrix: sp.csr_matrix, normalise: bool) -> float:
    """1 / the mean stored weight (1 when not normalising or empty): confidence = alpha x weight x scale.

    Summed event weights differ by an order of magnitude between sources (an
    imported rating weighs ~11, a simulated click 1), so an absolute alpha
    tuned on one is ~10x off on another; dividing by the mean makes alpha relative.
    """
    if not normalise or matrix.nnz == 0:
        return 1.0
    return float(1.0 / np.mean(matrix.data, dtype=np.float64))


class ALSRecommender:
    """Matrix factorisation with confidence = alpha x pair weight / mean pair weight (`normalise`)."""

    name = "als"

    def __init__(
        self,
        factors: int = DEFAULT_FACTORS,
        regularization: float = DEFAULT_REGULARIZATION,
        alpha: float = DEFAULT_ALPHA,
        iterations: int = DEFAULT_ITERATIONS,
        random_state: int = 0,
        normalise: bool = True,
        show_progress: bool = False,
    ) -> None:
        if factors < 1 or iterations < 1:
            raise ValueError("factors and iterations must be >= 1")
        if regularization < 0 or alpha <= 0:
            raise ValueError("regularization must be >= 0 and alpha > 0")
        self.factors = int(factors)
        self.regularization = float(regularization)
        self.alpha = float(alpha)
        self.iterations = int(iterations)
        self.random_state = int(random_state)
        self.normalise = bool(normalise)
        self.show_progress = show_progress
        self.weight_scale = 1.0  # set by fit: what one unit of raw weight counts (1 / mean weight)
        self.users = IdMap.empty()
        self.items = IdMap.empty()
        self.user_factors = np.zeros((0, self.factors), dtype=np.float32)
        self.item_factors = np.zeros((0, self.factors), dtype=np.float32)
        self._gram: np.ndarray | None = None

    def params(self) -> dict[str, Any]:
        return {
            "factors": self.factors,
            "regularization": self.regularization,
            "alpha": self.alpha,
            "iterations": self.iterations,
            "random_state": self.random_state,
            "normalise": self.normalise,
        }

    @property
    def confidence_scale(self) -> float:
        """Confidence per unit of raw pair weight (alpha x weight_scale): what training and fold-in apply."""
        return self.alpha * self.weight_scale

    def fit(self, dataset: Dataset, warm_start: ALSRecommender | None = None, iterations: int | None = None) -> Self:
        """Factorise `dataset.matrix` (users x items confidences).

        `warm_start`: begin from that model's factors (matched by external id;
        new users/items start random), so a few `iterations` (default: the
        model's own) refine it instead of a full fit from scratch: the retrain's
        final fit starts from its holdout model.
        """
        if dataset.matrix.nnz == 0:
            raise ValueError("cannot fit ALS on an empty matrix")
        if iterations is not None and iterations < 1:
            raise ValueError("iterations must be >= 1")
        if warm_start is not None and warm_start.factors != self.factors:
            raise ValueError(f"cannot warm-start {self.factors} factors from a model with {warm_start.factors}")
        scale = weight_scale(dataset.matrix, self.normalise)
        # implicit parallelises itself; a multithreaded BLAS underneath only oversubscribes.
        with threadpool_limits(1, "blas"):
            als = AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                alpha=self.alpha * scale,  # implicit multiplies the matrix by it: no copy of ours
                iterations=iterations or self.iterations,
                random_state=self.random_state,
                num_threads=0,
            )
            if warm_start is not None:  # implicit.cpu.als keeps factors preset before fit
                rng = np.random.default_rng(self.random_state)
                als.user_factors = _initial_factors(rng, dataset.users, warm_start.users, warm_start.user_factors)
                als.item_factors = _initial_factors(rng, dataset.items, warm_start.items, warm_start.item_factors)
            # implicit converts anything but float32 itself: no copy of ours on top
            als.fit(dataset.matrix, show_progress=self.show_progress)
        self._set_factors(dataset.users, dataset.items, als.user_factors, als.item_factors, scale)
        return self

    def _set_factors(self, users: IdMap, items: IdMap, user_factors: np.ndarray, item_factors: np.ndarray,
                     scale: float) -> None:
        expected = ((len(users), self.factors), (len(items), self.factors))
        if (np.shape(user_factors), np.shape(item_factors)) != expected:
            raise ValueError(
                f"factors of shape {np.shape(user_factors)}/{np.shape(item_factors)} do not match "
                f"{len(users)} users / {len(items)} items x {self.factors} factors"
            )
        self.users, self.items = users, items
        self.user_factors = np.ascontiguousarray(user_factors, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)
        self.weight_scale = float(scale)
        self._gram = None

    def with_factors(self, users: IdMap, items: IdMap, user_factors: np.ndarray, item_factors: np.ndarray,
                     scale: float = 1.0) -> Self:
        """A fitted model with these params, factors learned elsewhere (the Spark backend, a saved model)
        and the weight scale they were learned with."""
        model = type(self)(**self.params())
        model._set_factors(users, items, user_factors, item_factors, scale)
        return model

    @property
    def gram(self) -> np.ndarray:
        """YtY, cached for fold-in."""
        if self._gram is None:
            self._gram = gram(self.item_factors)
        return self._gram

    def recommend(
        self, user_indices: np.ndarray, n: int, seen: sp.csr_matrix | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-n item indices/scores for trained users; `seen` rows are indexed by user index."""
        check_fitted(self)
        users = check_indices(user_indices, len(self.users), "user")
        return self.recommend_vectors(self.user_factors[users], n, None if seen is None else seen[users])

    def recommend_vectors(
        self, user_vectors: np.ndarray, n: int, seen: sp.csr_matrix | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-n for arbitrary user vectors (e.g. folded-in); `seen` has one row per vector."""
        check_fitted(self)
        vectors = np.ascontiguousarray(np.atleast_2d(user_vectors), dtype=np.float32)
        if seen is not None and seen.shape != (len(vectors), len(self.items)):
            raise ValueError(f"seen must be ({len(vectors)}, {len(self.items)}), got {seen.shape}")
        return top_k(self.item_factors, vectors, n, None if seen is None else sp.csr_matrix(seen))

    def similar_items(self, item_indices: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Nearest items by cosine of item factors, the item itself excluded."""
        check_fitted(self)
        items = check_indices(item_indices, len(self.items), "item")
        norms = np.linalg.norm(self.item_factors, axis=1)
        unit = self.item_factors / np.where(norms > 0, norms, 1.0)[:, None]
        itself = sp.csr_matrix(
            (np.ones(len(items), dtype=np.float32), items, np.arange(len(items) + 1)), shape=(len(items), len(unit))
        )
        return top_k(unit, unit[items], n, itself)

    def fold_in(self, item_indices: np.ndarray, confidences: np.ndarray) -> np.ndarray:
        """User vector for a user not in training, from raw pair weights (scaled as in fit)."""
        check_fitted(self)
        conf = np.asarray(confidences, dtype=np.float64)
        return fold_in(self.item_factors, self.gram, item_indices, self.confidence_scale * conf, self.regularization)

    def save(self, directory: Path) -> None:
        write_model(directory, self, {"user_factors": self.user_factors, "item_factors": self.item_factors,
                                      "weight_scale": np.float64(self.weight_scale)})

    @classmethod
    def load(cls, directory: Path) -> Self:
        """A saved model; artifacts from before `weight_scale` was stored trained on raw weights (scale 1)."""
        saved = read_model(directory, cls.name)
        scale = float(saved.arrays["weight_scale"]) if "weight_scale" in saved.arrays else 1.0
        return cls(**recorded_params(saved.params)).with_factors(
            saved.users, saved.items, saved.arrays["user_factors"], saved.arrays["item_factors"], scale
        )


def recorded_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Params as recorded (meta.json, a run's record) -> as this code takes them: records from
    before `normalise` were fitted on raw weights."""
    return {"normalise": False, **params}


def _initial_factors(rng: np.random.Generator, ids: IdMap, known: IdMap, factors: np.ndarray) -> np.ndarray:
    """Rows of `factors` for the ids `known` has, implicit's random init (U[0, 0.01)) for the others."""
    init = rng.random((len(ids), factors.shape[1]), dtype=np.float32) * np.float32(0.01)
    idx = known.to_index(ids.external)
    found = idx >= 0
    init[found] = factors[idx[found]]
    return init


def top_k(
    items: np.ndarray, queries: np.ndarray, n: int, exclude: sp.csr_matrix | None
) -> tuple[np.ndarray, np.ndarray]:
    """implicit's batch top-k (multithreaded, never a dense users x items block), padded to n.

    BLAS is held to one thread inside: implicit already runs one thread per
    core, and nested BLAS threads made it ~3x slower on a busy 2-core machine.
    """
    k = min(n, len(items))
    if k == 0 or not len(queries):
        return pad_ranked(np.zeros((len(queries), 0)), np.zeros((len(queries), 0)), n)
    rows = None if exclude is None else _RowIndices(exclude.indptr, exclude.indices)
    if len(queries) == 1:  # one user (request time): one thread anyway; the limit would cost ~0.1 ms
        ids, scores = topk(items, queries, k, filter_query_items=rows, num_threads=1)
        return pad_ranked(ids, scores, n)
    with _blas().limit(limits=1, user_api="blas"):
        ids, scores = topk(items, queries, k, filter_query_items=rows, num_threads=0)
    return pad_ranked(ids, scores, n)


def top_k_one(items: np.ndarray, query: np.ndarray, n: int, exclude: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`top_k` of one query (request time), the excluded item indices as an array (no scipy row):
    the same implicit call and scores, 1-d and unpadded (`mark_ranked`)."""
    k = min(n, len(items))
    if k == 0:
        return mark_ranked(np.zeros(0), np.zeros(0), n)
    rows = _RowIndices(np.array([0, len(exclude)]), exclude)
    ids, scores = topk(items, query.reshape(1, -1), k, filter_query_items=rows, num_threads=1)
    return mark_ranked(ids[0], scores[0], n)


@functools.cache
def _blas() -> ThreadpoolController:
    """The process's thread pools, found once: `threadpool_limits` scans every loaded library
    on each call (~1-3 ms), most of a request-time two-level ranking (app/web)."""
    return ThreadpoolController()


class _RowIndices:
    """What implicit's topk reads of its filter (`filter[i].indices`, one row at a time, holding
    the GIL), without building a scipy matrix per row: scipy's row slicing cost ~60 us a row,
    ~7 s of the 100k-user publish (bench/topk.py)."""

    __slots__ = ("indptr", "indices")

    def __init__(self, indptr: np.ndarray, indices: np.ndarray) -> None:
        self.indptr, self.indices = indptr, indices

    def __getitem__(self, row: int) -> _Row:
        return _Row(self.indices[self.indptr[row] : self.indptr[row + 1]])


class _Row:
    __slots__ = ("indices",)

    def __init__(self, indices: np.ndarray) -> None:
        self.indices = indices
