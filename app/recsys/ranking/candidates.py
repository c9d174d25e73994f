"""First-level candidates: the union of several sources' top-N, each candidate with every source's score and rank.

A source proposes films for a batch of users (`UserBatch`) and can score any
(user, film) pair it was not the one to propose, so the second level sees,
for every candidate, what each first-level model thinks of it: ALS's score of
a film that only "similar to recent plays" proposed is informative. A source
that cannot score arbitrary pairs (a generic `Recommender`) gives NaN there
(LightGBM treats it as missing). A film a source did not propose has rank 2N.

The same batch type serves offline ranking (warm users: their trained ALS
vectors, their rows of the training matrix) and request time (one user: a
folded-in vector, the live recent plays, no training row), so both go through
one `union`. A request ranks ONE user, where scipy's per-call overhead (~50-200 us a
sparse step) was most of the cost: every source also has a one-user method
(`top_one`, `score_one` over a `OneUser`, plain numpy on a few hundred films) and
`union_one` merges them; each gives exactly the batch path's numbers for a batch
of that one user (same float32 operations in the same order; tests compare them
on random users). Sources:

    FactorSource      dot product of user vectors and item factors (ALS; fold-in at request time)
    ItemScoreSource   one score per film, minus the user's films (popular, trending)
    NeighbourSource   similar to the user's recent plays, from any model's similar-items lists
    ItemItemSource    the user's whole history x an item-item model's top-k weights (EASE, item-kNN)
    RecommenderSource any fitted `Recommender` (e.g. the FM): its own top-N, warm users only
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np
import scipy.sparse as sp

from app.recsys.data.idmap import IdMap
from app.recsys.models.als import top_k, top_k_one
from app.recsys.models.base import Recommender, binary
from app.recsys.models.popularity import PopularRecommender
from app.recsys.models.topn import mark_ranked, pad_ranked, top_n
from app.recsys.ranking.history import row_positions, sparse_top
from app.recsys.ranking.recall import distinct_keys

# Users scored at once by a factor source: a block of 512 x 20k films is 40 MB of float32.
_BLOCK_ROWS = 512
POPULAR, TRENDING, RECENT = "popular", "trending", "recent"  # the sources every two-level model has


@dataclass(frozen=True, eq=False)
class UserBatch:
    """The users ranked together, as every source needs them (row i = one user)."""

    seen: sp.csr_matrix  # (rows, films): never proposed (films the users already have)
    vectors: np.ndarray | None = None  # (rows, factors) ALS user vectors: trained, or folded-in
    recent: sp.csr_matrix | None = None  # (rows, films) decayed weights of each user's last plays
    indices: np.ndarray | None = None  # rows of the first-level training matrix (warm users only)
    matrix: sp.csr_matrix | None = None  # that matrix (what `Recommender.recommend` filters by)

    def __len__(self) -> int:
        return self.seen.shape[0]


@dataclass(frozen=True, eq=False)
class OneUser:
    """One user at request time: what `UserBatch` holds for a batch of one, as plain arrays."""

    seen: np.ndarray  # sorted distinct film indices never proposed
    vector: np.ndarray | None  # (1, factors) float32 contiguous ALS vector (folded in), None = unknown
    recent: np.ndarray  # film indices of the last plays, ascending
    weights: np.ndarray  # their decayed weights, float32 (`recent_row`'s values)

    def batch(self, n_items: int) -> UserBatch:
        """The same user as a batch of one (what the batch path ranks)."""
        seen = sp.csr_matrix((np.ones(len(self.seen), dtype=np.float32), self.seen, [0, len(self.seen)]),
                             shape=(1, n_items))
        recent = sp.csr_matrix((self.weights, self.recent, [0, len(self.recent)]), shape=(1, n_items))
        return UserBatch(seen=seen, vectors=self.vector, recent=recent)


class CandidateSource(Protocol):
    """What `union` (and `union_one`, one user at request time) needs of a first-level model."""

    name: str

    def top_one(self, user: OneUser, n: int) -> tuple[np.ndarray, np.ndarray]:
        """`top` of a batch of one as 1-d arrays (`mark_ranked`: may be shorter than n)."""
        ...

    def score_one(self, user: OneUser, items: np.ndarray) -> np.ndarray:
        """`score` of a batch of one: the user's score of each film."""
        ...

    def top(self, batch: UserBatch, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(film indices, scores), (rows, n), padded with -1 / -inf; seen films never proposed."""
        ...

    def score(self, batch: UserBatch, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Score of each (row, film) pair, rows ascending; NaN where the source cannot tell."""
        ...


def _empty(rows: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    return pad_ranked(np.zeros((rows, 0)), np.zeros((rows, 0)), n)


class FactorSource:
    """Dot products of user vectors (the batch's) with item factors: ALS, or any factor model.

    Top-N through implicit's top-k (a heap per user, never a users x films block: 2x faster
    than numpy's argpartition over the block); the scores of other sources' candidates from
    dense blocks of `_BLOCK_ROWS` users x all films (one BLAS product each, ~40 ms), cheaper
    than gathering a vector pair per candidate. One user (request time) goes the same way.
    """

    def __init__(self, name: str, item_factors: np.ndarray) -> None:
        self.name = name
        self.item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)

    def top(self, batch: UserBatch, n: int) -> tuple[np.ndarray, np.ndarray]:
        if batch.vectors is None:
            return _empty(len(batch), n)
        return top_k(self.item_factors, np.ascontiguousarray(batch.vectors, dtype=np.float32), n, batch.seen)

    def score(self, batch: UserBatch, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        out = np.full(len(rows), np.nan, dtype=np.float32)
        if batch.vectors is None:
            return out
        vectors = np.asarray(batch.vectors, dtype=np.float32)
        for start in range(0, len(vectors), _BLOCK_ROWS):
            lo, hi = np.searchsorted(rows, [start, start + _BLOCK_ROWS])  # rows come sorted
            if hi > lo:
                block = vectors[start:start + _BLOCK_ROWS] @ self.item_factors.T
                out[lo:hi] = block[rows[lo:hi] - start, items[lo:hi]]
        return out

    def top_one(self, user: OneUser, n: int) -> tuple[np.ndarray, np.ndarray]:
        if user.vector is None:
            return _none(n)
        return top_k_one(self.item_factors, user.vector, n, user.seen)

    def score_one(self, user: OneUser, items: np.ndarray) -> np.ndarray:
        if user.vector is None:
            return np.full(len(items), np.nan, dtype=np.float32)
        return (user.vector @ self.item_factors.T)[0, items]  # `score`'s product for a block of one row


class ItemScoreSource:
    """One score per film (popular, trending), ranked per user without the user's films."""

    def __init__(self, name: str, item_scores: np.ndarray) -> None:
        self.name = name
        self.item_scores = np.asarray(item_scores, dtype=np.float32)
        self._ranking = PopularRecommender()  # its masking of one global ranking, over these scores
        self._ranking.item_scores = self.item_scores
        self._ranking.items = IdMap(np.arange(len(self.item_scores)))
        # the global ranking, sorted once: a request-time ranking of one user would sort it each time
        self._order = np.argsort(-self.item_scores, kind="stable")

    def top(self, batch: UserBatch, n: int) -> tuple[np.ndarray, np.ndarray]:
        seen = batch.seen.tocsr()
        if len(batch) == 1:  # request time: the head of the ranking minus the user's films, no matrix work
            own = seen.indices[seen.indptr[0]:seen.indptr[1]]  # every stored film, as `_ranked_excluding`
            head = self._order[: n + len(own)]
            ids = head[~np.isin(head, own)][:n]
            return pad_ranked(ids[None, :], self.item_scores[ids][None, :], n)
        return self._ranking._ranked_excluding(seen, n, self._order)  # noqa: SLF001 (one batch row per user)

    def score(self, batch: UserBatch, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.item_scores[items]

    def top_one(self, user: OneUser, n: int) -> tuple[np.ndarray, np.ndarray]:
        head = self._order[: n + len(user.seen)]
        ids = head[~_member(head, user.seen)][:n]
        return mark_ranked(ids, self.item_scores[ids], n)

    def score_one(self, user: OneUser, items: np.ndarray) -> np.ndarray:
        return self.item_scores[items]


class _SparseProductSource:
    """Scores = some rows of the batch (`_rows`) x a sparse items x items matrix; the user's own
    films dropped. Subclasses say which rows: the recent plays (`NeighbourSource`) or the whole
    history (`ItemItemSource`)."""

    def __init__(self, name: str, neighbours: sp.csr_matrix) -> None:
        self.name = name
        self.neighbours = sp.csr_matrix(neighbours, dtype=np.float32)
        # `top` and `score` of one batch (or `top_one` and `score_one` of one user) share it
        self._last: tuple[UserBatch, sp.csr_matrix] | tuple[OneUser, np.ndarray] | None = None

    def _rows(self, batch: UserBatch) -> sp.csr_matrix | None:
        raise NotImplementedError

    def _row_one(self, user: OneUser) -> tuple[np.ndarray, np.ndarray]:
        """`_rows` of a batch of one as its stored entries: (films ascending, float32 weights)."""
        raise NotImplementedError

    def _scores(self, batch: UserBatch) -> sp.csr_matrix:
        last = self._last
        if last is not None and last[0] is batch:
            return last[1]  # type: ignore[return-value]
        rows = self._rows(batch)
        if rows is None:
            product = sp.csr_matrix((len(batch), self.neighbours.shape[1]), dtype=np.float32)
        else:
            product = _drop_seen((rows @ self.neighbours).tocsr(), batch.seen.tocsr())
        self._last = (batch, product)
        return product

    def top(self, batch: UserBatch, n: int) -> tuple[np.ndarray, np.ndarray]:
        return sparse_top(self._scores(batch), n)

    def score(self, batch: UserBatch, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        """product[rows, items] by a search in its sorted (row, film) keys (scipy's fancy indexing
        of a csr matrix cost ~0.2 ms of a request-time ranking); 0 where it holds nothing."""
        product = self._scores(batch)
        width = np.int64(product.shape[1])
        keys = np.repeat(np.arange(product.shape[0], dtype=np.int64), np.diff(product.indptr)) * width \
            + product.indices
        wanted = np.asarray(rows, dtype=np.int64) * width + np.asarray(items, dtype=np.int64)
        at = np.minimum(np.searchsorted(keys, wanted), max(len(keys) - 1, 0))
        found = keys[at] == wanted if len(keys) else np.zeros(len(wanted), dtype=bool)
        return np.where(found, product.data[at] if len(keys) else 0, 0).astype(np.float32)

    def _dense(self, user: OneUser) -> np.ndarray:
        """The user's row of `_scores` as a dense float32 vector over the films: the products summed in
        scipy's order (`_row_one`'s films ascending, each neighbour row as stored; float32), the
        user's films zeroed. Cached for the user's `top_one` and `score_one`, as `_scores` is."""
        last = self._last
        if last is not None and last[0] is user:
            return last[1]
        nb = self.neighbours
        dense = np.zeros(nb.shape[1], dtype=np.float32)
        films, weights = self._row_one(user)
        at = row_positions(nb.indptr, films)
        # one `add.at` adds in array order: each film's products after the previous film's, as scipy
        np.add.at(dense, nb.indices[at], np.repeat(weights, nb.indptr[films + 1] - nb.indptr[films]) * nb.data[at])
        dense[user.seen] = 0
        self._last = (user, dense)
        return dense

    def top_one(self, user: OneUser, n: int) -> tuple[np.ndarray, np.ndarray]:
        dense = self._dense(user)
        films = np.flatnonzero(dense)  # ascending: ties keep film order, as `top`
        best = films[np.argsort(-dense[films], kind="stable")[:n]]
        return best, dense[best]

    def score_one(self, user: OneUser, items: np.ndarray) -> np.ndarray:
        return self._dense(user)[items]


class NeighbourSource(_SparseProductSource):
    """Films similar to the user's recent plays: sum over recent films j of weight_j x sim(j, film)."""

    def _rows(self, batch: UserBatch) -> sp.csr_matrix | None:
        return batch.recent

    def _row_one(self, user: OneUser) -> tuple[np.ndarray, np.ndarray]:
        return user.recent, user.weights


class ItemItemSource(_SparseProductSource):
    """An item-item model (EASE, item-kNN) as a sparse matrix: score(user, film) = sum over the
    user's films j (every film of `seen`, weight 1) of W[j, film].

    W is the model's top-k weights per film (`neighbours_of`): EASE's B is dense (n x n floats,
    100 MB at 5,000 films), too big for the request-time bundle, so the source is DEFINED on
    the cut matrix, offline as at request time: the same W scores a warm user's training row
    and a newcomer's recent plays (their whole history), so the cut creates no train/serve skew.
    It scores any (user, film) pair (0 where W links none of the user's films to the film).
    """

    def _rows(self, batch: UserBatch) -> sp.csr_matrix | None:
        return binary(batch.seen.tocsr())

    def _row_one(self, user: OneUser) -> tuple[np.ndarray, np.ndarray]:
        return user.seen, np.ones(len(user.seen), dtype=np.float32)


def _drop_seen(product: sp.csr_matrix, seen: sp.csr_matrix) -> sp.csr_matrix:
    """`product` without the user's own films and without zeros, indices sorted: what
    `product - product.multiply(seen > 0)` + `eliminate_zeros` gives, in one matrix
    construction instead of five (~0.1 ms of a request-time ranking)."""
    product.sort_indices()
    width = np.int64(product.shape[1])
    rows = np.repeat(np.arange(product.shape[0], dtype=np.int64), np.diff(product.indptr))
    seen_rows = np.repeat(np.arange(seen.shape[0], dtype=np.int64), np.diff(seen.indptr))
    own = (seen_rows * width + seen.indices)[seen.data > 0]
    keep = (product.data != 0) & ~np.isin(rows * width + product.indices, own)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows[keep], minlength=product.shape[0]))])
    return sp.csr_matrix((product.data[keep], product.indices[keep], indptr), shape=product.shape)


class RecommenderSource:
    """Any fitted `Recommender` (implicit-style interface): its own top-N for warm users.

    It proposes films only for users of its training matrix and cannot score other pairs
    (NaN): a new model plugs in without code here (EASE, kNN, FM of the tuning work).
    """

    def __init__(self, name: str, model: Recommender) -> None:
        self.name = name
        self.model = model

    def top(self, batch: UserBatch, n: int) -> tuple[np.ndarray, np.ndarray]:
        if batch.indices is None or batch.matrix is None:
            return _empty(len(batch), n)
        return self.model.recommend(batch.indices, n, seen=batch.matrix)

    def score(self, batch: UserBatch, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        return np.full(len(rows), np.nan, dtype=np.float32)

    def top_one(self, user: OneUser, n: int) -> tuple[np.ndarray, np.ndarray]:
        return _none(n)  # a request-time user has no training row

    def score_one(self, user: OneUser, items: np.ndarray) -> np.ndarray:
        return np.full(len(items), np.nan, dtype=np.float32)


@dataclass(frozen=True, eq=False)
class Candidates:
    """The union of the sources' top-N for a batch: one entry per distinct (row, film) pair,
    sorted by row then film. `scores`/`ranks` have one column per source (in `sources` order)."""

    sources: tuple[str, ...]
    n: int  # per-source depth; rank 2n = not proposed by that source
    rows: np.ndarray  # int64, batch row of each pair
    items: np.ndarray  # int64, film index of each pair
    scores: np.ndarray  # (pairs, sources) float32, NaN = the source cannot score it
    ranks: np.ndarray  # (pairs, sources) float32, 1..n, 2n = not proposed

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def n_sources(self) -> np.ndarray:
        """How many sources proposed each pair."""
        return (self.ranks <= self.n).sum(axis=1).astype(np.float32)

    def group_sizes(self, n_rows: int) -> np.ndarray:
        """Candidates per batch row (LightGBM's query groups; pairs are sorted by row)."""
        return np.bincount(self.rows, minlength=n_rows)


def union(sources: Sequence[CandidateSource], batch: UserBatch, n: int) -> Candidates:
    """Each source's top-`n` for the batch, merged: scores and ranks of every source for every pair."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    tops = [source.top(batch, n) for source in sources]
    width = np.int64(batch.seen.shape[1])
    keys_of = []
    for ids, _ in tops:
        rows = np.repeat(np.arange(len(batch), dtype=np.int64), ids.shape[1]).reshape(ids.shape)
        keys_of.append(np.where(ids >= 0, rows * width + ids, -1))
    keys = distinct_keys(np.concatenate([k.ravel() for k in keys_of]))
    rows, items = keys // width, keys % width
    scores = np.full((len(keys), len(sources)), np.nan, dtype=np.float32)
    ranks = np.full((len(keys), len(sources)), np.float32(2 * n))
    for j, ((ids, top_scores), source_keys) in enumerate(zip(tops, keys_of)):
        valid = source_keys >= 0
        pos = np.searchsorted(keys, source_keys[valid])
        scores[pos, j] = top_scores[valid]
        ranks[pos, j] = np.broadcast_to(np.arange(1, ids.shape[1] + 1, dtype=np.float32), ids.shape)[valid]
        missing = ranks[:, j] > n
        if missing.any():
            scores[missing, j] = sources[j].score(batch, rows[missing], items[missing])
    return Candidates(tuple(s.name for s in sources), n, rows, items, scores, ranks)


def union_one(sources: Sequence[CandidateSource], user: OneUser, n: int) -> Candidates:
    """`union` of a batch of one user, through the sources' one-user methods: the same pairs, scores
    and ranks (rows all 0) without a sparse matrix."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    tops = [source.top_one(user, n) for source in sources]
    ids = np.concatenate([top[0] for top in tops])
    column = np.repeat(np.arange(len(sources)), [len(top[0]) for top in tops])
    rank = np.concatenate([np.arange(1, len(top[0]) + 1, dtype=np.float32) for top in tops])
    valid = ids >= 0
    items = distinct_keys(ids)
    pos, column = np.searchsorted(items, ids[valid]), column[valid]
    scores = np.full((len(items), len(sources)), np.nan, dtype=np.float32)
    ranks = np.full((len(items), len(sources)), np.float32(2 * n))
    scores[pos, column] = np.concatenate([top[1] for top in tops])[valid]
    ranks[pos, column] = rank[valid]
    for j, source in enumerate(sources):
        missing = np.flatnonzero(ranks[:, j] > n)
        if len(missing):
            scores[missing, j] = source.score_one(user, items[missing])
    return Candidates(tuple(s.name for s in sources), n, np.zeros(len(items), dtype=np.int64), items, scores, ranks)


def _none(n: int) -> tuple[np.ndarray, np.ndarray]:
    """A one-user top with nothing in it."""
    return mark_ranked(np.zeros(0), np.zeros(0), n)


def _member(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """`np.isin(values, sorted_set)` for a small sorted set, by binary search (np.isin costs ~30 us a call)."""
    if not len(sorted_set):
        return np.zeros(len(values), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)
    return sorted_set[at] == values
