"""A factorization machine over (user, film, film genres) with `myfm` (Bayesian FM, Gibbs sampling).

Why myfm: it is the one maintained FM package that installs on Python 3.11
(lightfm, fastFM and rankfm fail to build; docs/models.md). Its Gibbs sampler
puts priors on everything, so there is no learning rate or regularisation to
tune.

Implicit data as binary classification: every (user, film) pair the user
met is a positive, `negatives` films per positive are drawn uniformly as
negatives (drawn by popularity they taught "not popular" and lost 8-44%).
Rows are myfm relation blocks (a user block and a film block of film one-hot
| genres), so a sweep costs per distinct user and film, not per row.

Scoring averages the kept samples' linear predictors in closed form, so top-k
is one dot product, as for ALS:

    score(u, i) = w0 + w_u + b_i + v_u . q_i,    q_i = v_i + sum_g x_ig v_g,
    b_i = w_i + sum_g x_ig w_g + <v_i, sum_g x_ig v_g> + (|sum_g x_ig v_g|^2 - sum_g x_ig^2 |v_g|^2) / 2

(w0 and w_u do not change a user's ranking and are dropped). `max_users`
trains on a fixed random subsample of users (the FM is the most expensive
first-level model: ~10 min at 4.6M pairs in full); the other users get their
vector by fold-in: per sample, the ridge regression of the model's own mean
predictor on positives and on uniformly drawn negatives (in expectation, so
no sampling), against the fixed film side, with the prior precision
estimated from the trained users' vectors.
"""
from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any, Self

import numpy as np
import scipy.sparse as sp

from app.recsys.data.dataset import Dataset
from app.recsys.data.idmap import IdMap
from app.recsys.models.base import binary, check_fitted, check_indices, read_model, write_model
from app.recsys.models.topn import block_rows, top_n_excluding

_FOLD_IN_BLOCK = 4_096  # users solved at once (memory ~ block x samples x (rank + 1)^2)
_TARGET_ROWS = 200_000  # training rows the fold-in's targets are estimated on


class FMRecommender:
    """Bayesian FM as a candidate generator; `fit(dataset, genres)` with genres aligned to the dataset's items."""

    name = "fm"

    def __init__(
        self,
        rank: int = 16,
        sweeps: int = 30,
        negatives: int = 4,
        max_users: int | None = None,
        use_genres: bool = True,
        random_state: int = 0,
    ) -> None:
        if rank < 1 or sweeps < 2 or negatives < 1 or (max_users is not None and max_users < 1):
            raise ValueError("need rank >= 1, sweeps >= 2, negatives >= 1 and max_users >= 1 (or None)")
        self.rank, self.sweeps, self.negatives = int(rank), int(sweeps), int(negatives)
        self.max_users = None if max_users is None else int(max_users)
        self.use_genres = bool(use_genres)
        self.random_state = int(random_state)
        self.users = IdMap.empty()
        self.items = IdMap.empty()
        self.user_vectors = np.zeros((0, 0), dtype=np.float32)  # the kept samples' v_u side by side, / samples
        self.item_vectors = np.zeros((0, 0), dtype=np.float32)  # ... their q_i side by side
        self.item_bias = np.zeros(0, dtype=np.float32)  # mean b_i
        self.trained = np.zeros(0, dtype=bool)  # per user: trained (True) or folded in
        self._fold = _FoldIn.empty()
        # Users not trained are folded in when first asked for (or at save): a retrain scores a few
        # hundred holdout users, and folding in all 100k cost most of the FM's fit (bench/train.py).
        self._history = sp.csr_matrix((0, 0), dtype=np.float32)
        self._ready = np.zeros(0, dtype=bool)  # per user: its row of user_vectors is filled

    def params(self) -> dict[str, Any]:
        return {"rank": self.rank, "sweeps": self.sweeps, "negatives": self.negatives, "max_users": self.max_users,
                "use_genres": self.use_genres, "random_state": self.random_state}

    def fit(self, dataset: Dataset, genres: sp.csr_matrix | None = None) -> Self:
        """Sample the FM on the dataset's pairs; `genres` is items x genres (rows of `dataset.items`)."""
        import myfm  # imported here: only the retrain needs it, never the web

        if dataset.matrix.nnz == 0:
            raise ValueError("cannot fit FM on an empty matrix")
        history = binary(dataset.matrix)
        n_users, n_items = history.shape
        if genres is None or not self.use_genres:
            genres = sp.csr_matrix((n_items, 0), dtype=np.float32)
        if genres.shape[0] != n_items:
            raise ValueError(f"genres must have one row per item ({n_items}), got {genres.shape[0]}")
        rng = np.random.default_rng(self.random_state)
        trained = np.ones(n_users, dtype=bool)
        if self.max_users is not None and n_users > self.max_users:
            trained[:] = False
            trained[rng.choice(n_users, self.max_users, replace=False)] = True
        sample = np.flatnonzero(trained)
        rows_users, rows_items, labels = _training_rows(history[sample], self.negatives, rng)
        n_genres = genres.shape[1]
        film_block = sp.hstack([sp.identity(n_items, format="csr"), genres], format="csr")
        blocks = [myfm.RelationBlock(rows_users, sp.identity(len(sample), format="csr")),
                  myfm.RelationBlock(rows_items, film_block)]
        fm = myfm.MyFMClassifier(rank=self.rank, random_seed=self.random_state)
        with contextlib.redirect_stderr(io.StringIO()):  # myfm always draws a tqdm bar
            fm.fit(sp.csr_matrix((len(labels), 0)), labels, X_rel=blocks, n_iter=self.sweeps,
                   n_kept_samples=max(2, self.sweeps // 3),
                   grouping=[0] * len(sample) + [1] * n_items + [2] * n_genres)
        samples = [_Sample.of(s, len(sample), n_items, genres) for s in fm.predictor_.samples]

        self.users, self.items, self.trained = dataset.users, dataset.items, trained
        self._fold = _FoldIn.estimate(samples, rows_users, rows_items, labels, self.negatives)
        vectors = np.zeros((n_users, self.rank * len(samples)), dtype=np.float32)
        vectors[sample] = np.hstack([s.user for s in samples]) / len(samples)
        self.user_vectors, self._history, self._ready = vectors, history, trained.copy()
        self.item_vectors = np.hstack([s.item for s in samples]).astype(np.float32)
        self.item_bias = np.mean([s.bias for s in samples], axis=0).astype(np.float32)
        return self

    def recommend(
        self, user_indices: np.ndarray, n: int, seen: sp.csr_matrix | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        check_fitted(self)
        users = check_indices(user_indices, len(self.users), "user")
        return self._ranked(self._vectors(users), n, None if seen is None else sp.csr_matrix(seen)[users])

    def _vectors(self, users: np.ndarray) -> np.ndarray:
        """The users' vectors, folding in (once) those not trained and not asked for before."""
        missing = np.unique(users[~self._ready[users]])
        if len(missing):
            self.user_vectors[missing] = self._fold.user_vectors(self._history[missing])
            self._ready[missing] = True
        return self.user_vectors[users]

    def recommend_rows(
        self, rows: sp.csr_matrix, n: int, exclude: sp.csr_matrix | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-n for users the model has not seen, from their history rows (folded in)."""
        check_fitted(self)
        rows = sp.csr_matrix(rows)
        if rows.shape[1] != len(self.items):
            raise ValueError(f"history rows must have {len(self.items)} columns, got {rows.shape[1]}")
        return self._ranked(self._fold.user_vectors(binary(rows)), n, exclude)

    def _ranked(self, vectors: np.ndarray, n: int, exclude: sp.csr_matrix | None) -> tuple[np.ndarray, np.ndarray]:
        ids = np.full((len(vectors), n), -1, dtype=np.int64)
        top = np.full((len(vectors), n), -np.inf, dtype=np.float32)
        step = block_rows(len(self.items))
        for start in range(0, len(vectors), step):
            block = slice(start, start + step)
            scores = vectors[block] @ self.item_vectors.T + self.item_bias[None, :]
            ids[block], top[block] = top_n_excluding(scores, n, None if exclude is None else exclude[block])
        return ids, top

    def similar_items(self, item_indices: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Nearest films by cosine of their (sample-concatenated) film vectors, the film itself excluded."""
        check_fitted(self)
        items = check_indices(item_indices, len(self.items), "item")
        norms = np.linalg.norm(self.item_vectors, axis=1)
        unit = self.item_vectors / np.where(norms > 0, norms, 1.0)[:, None]
        itself = sp.csr_matrix((np.ones(len(items)), items, np.arange(len(items) + 1)), shape=(len(items), len(unit)))
        ids = np.full((len(items), n), -1, dtype=np.int64)
        top = np.full((len(items), n), -np.inf, dtype=np.float32)
        step = block_rows(len(unit))
        for start in range(0, len(items), step):
            block = slice(start, start + step)
            ids[block], top[block] = top_n_excluding(unit[items[block]] @ unit.T, n, itself[block])
        return ids, top

    def save(self, directory: Path) -> None:
        self._vectors(np.arange(len(self._ready)))
        write_model(directory, self, {"user_vectors": self.user_vectors, "item_vectors": self.item_vectors,
                                      "item_bias": self.item_bias, "trained": self.trained, **self._fold.arrays()})

    @classmethod
    def load(cls, directory: Path) -> Self:
        saved = read_model(directory, cls.name)
        model = cls(**saved.params)
        model.users, model.items = saved.users, saved.items
        model.user_vectors, model.item_vectors = saved.arrays["user_vectors"], saved.arrays["item_vectors"]
        model.item_bias, model.trained = saved.arrays["item_bias"], saved.arrays["trained"]
        model._fold = _FoldIn.from_arrays(saved.arrays)
        model._ready = np.ones(len(model.user_vectors), dtype=bool)
        return model


def _training_rows(history: sp.csr_matrix, negatives: int, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user row, item, label) of every positive pair and `negatives` uniform non-positives per positive."""
    n_items = history.shape[1]
    pos_users = np.repeat(np.arange(history.shape[0]), np.diff(history.indptr))
    pos_items = history.indices.astype(np.int64)
    neg_users = np.repeat(pos_users, negatives)
    neg_items = rng.integers(0, n_items, size=len(neg_users))
    positives = pos_users * n_items + pos_items  # sorted: CSR order
    keys = neg_users * n_items + neg_items
    found = np.searchsorted(positives, keys)
    is_positive = positives[np.minimum(found, len(positives) - 1)] == keys
    neg_users, neg_items = neg_users[~is_positive], neg_items[~is_positive]
    labels = np.r_[np.ones(len(pos_users), dtype=np.int64), np.zeros(len(neg_users), dtype=np.int64)]
    return np.r_[pos_users, neg_users], np.r_[pos_items, neg_items], labels


class _Sample:
    """One posterior sample in closed form: user vectors/biases, film vectors q_i and biases b_i, w0."""

    def __init__(self, user: np.ndarray, user_bias: np.ndarray, item: np.ndarray, bias: np.ndarray, w0: float):
        self.user, self.user_bias, self.item, self.bias, self.w0 = user, user_bias, item, bias, w0

    @classmethod
    def of(cls, sample: Any, n_users: int, n_items: int, genres: sp.csr_matrix) -> _Sample:
        w, v = np.asarray(sample.w, dtype=np.float64), np.asarray(sample.V, dtype=np.float64)
        v_user, v_item, v_genre = v[:n_users], v[n_users : n_users + n_items], v[n_users + n_items :]
        w_user, w_item, w_genre = w[:n_users], w[n_users : n_users + n_items], w[n_users + n_items :]
        genre_part = genres @ v_genre
        q = v_item + genre_part
        bias = (w_item + genres @ w_genre + np.einsum("ij,ij->i", v_item, genre_part)
                + 0.5 * (np.einsum("ij,ij->i", genre_part, genre_part)
                         - genres.multiply(genres) @ np.einsum("ij,ij->i", v_genre, v_genre)))
        return cls(v_user.astype(np.float32), w_user, q.astype(np.float32), np.asarray(bias).ravel(), float(sample.w0))


class _FoldIn:
    """Per sample: film side [q_i, 1], residual targets of positives and negatives, prior precisions."""

    def __init__(self, items: np.ndarray, positive: np.ndarray, negative: np.ndarray, precision: np.ndarray,
                 negatives: int) -> None:
        self.items = items  # (samples, n_items, rank + 1)
        self.positive = positive  # (samples, n_items): target - w0 - b_i for a positive
        self.negative = negative  # ... for a negative
        self.precision = precision  # (samples, rank + 1)
        self.negatives = negatives

    @classmethod
    def empty(cls) -> _FoldIn:
        return cls(np.zeros((0, 0, 0)), np.zeros((0, 0)), np.zeros((0, 0)), np.zeros((0, 0)), 1)

    @classmethod
    def estimate(cls, samples: list[_Sample], users: np.ndarray, items: np.ndarray, labels: np.ndarray,
                 negatives: int) -> _FoldIn:
        """Targets = the sample's mean predictor on its positive / negative training rows (a subsample of
        rows); prior precision = 1 / mean square of the trained users' vectors and biases."""
        pick = np.random.default_rng(0).choice(len(labels), size=min(len(labels), _TARGET_ROWS), replace=False)
        u, i, y = users[pick], items[pick], labels[pick] == 1
        sides, positive, negative, precision = [], [], [], []
        for s in samples:
            f = s.w0 + s.user_bias[u] + s.bias[i] + np.einsum("ij,ij->i", s.user[u], s.item[i])
            target_pos = f[y].mean() if y.any() else 1.0
            target_neg = f[~y].mean() if (~y).any() else -1.0
            sides.append(np.hstack([s.item, np.ones((len(s.item), 1), dtype=np.float32)]))
            positive.append(target_pos - s.w0 - s.bias)
            negative.append(target_neg - s.w0 - s.bias)
            second = np.r_[np.mean(s.user.astype(np.float64) ** 2, axis=0), np.mean(s.user_bias**2)]
            precision.append(1.0 / np.maximum(second, 1e-6))
        return cls(np.stack(sides), np.stack(positive), np.stack(negative), np.stack(precision), negatives)

    def user_vectors(self, history: sp.csr_matrix) -> np.ndarray:
        """(users x rank * samples) vectors of binary history rows, scaled like the trained ones (/ samples)."""
        n_samples, n_items, width = self.items.shape
        rank = width - 1
        out = np.zeros((history.shape[0], rank * n_samples), dtype=np.float32)
        counts = np.diff(history.indptr).astype(np.float64)
        for s in range(n_samples):
            side = self.items[s].astype(np.float64)
            outer = np.einsum("ij,ik->ijk", side, side).reshape(n_items, width * width)
            all_outer, all_target = outer.sum(axis=0), side.T @ self.negative[s]
            for start in range(0, history.shape[0], _FOLD_IN_BLOCK):
                block = slice(start, start + _FOLD_IN_BLOCK)
                rows = history[block]
                expected = self.negatives * counts[block] / n_items  # expected negatives per film
                a = (rows @ outer + expected[:, None] * all_outer).reshape(-1, width, width)
                a[:, np.arange(width), np.arange(width)] += self.precision[s]
                b = rows @ (side * self.positive[s][:, None]) + expected[:, None] * all_target
                solved = np.linalg.solve(a, b[:, :, None])[:, :, 0]
                out[block, s * rank : (s + 1) * rank] = solved[:, :rank] / n_samples
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        return {"fold_items": self.items.astype(np.float32), "fold_positive": self.positive,
                "fold_negative": self.negative, "fold_precision": self.precision,
                "fold_negatives": np.asarray(self.negatives)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> _FoldIn:
        return cls(arrays["fold_items"], arrays["fold_positive"], arrays["fold_negative"], arrays["fold_precision"],
                   int(arrays["fold_negatives"]))
