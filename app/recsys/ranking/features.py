"""The second level's features: ONE definition for offline training and scoring and for request time.

Per candidate (user, film) pair, in `feature_names(sources)` order:

    s_<source>, r_<source>   each first-level source's score and rank (candidates.Candidates)
    n_sources                how many sources proposed the film
    genre_match              the user's genre shares . the film's genre shares
    pop_vs_user_pref         the film's viewer share / the mean viewer share of the user's films
    i_*                      the film: viewer share, play share, completion rate, average rating,
                             trending share, time since its last event and since its first
    u_*                      the user: films (log), events (log), average rating, time since last visit

Everything is a share or a window-relative time, never a raw count of the
whole history: the ranker is trained on features as of the label split's
start and applied as of the holdout's and then of now, when the history is
~25% longer and raw counts have grown with it (docs/ranking.md).

Two inputs make the features, whichever path asks:
- `FilmSnapshot`: per-film features as of a time. Offline it is computed from the
  events before that time (`film_snapshot`, which reads nothing at or after `as_of`);
  it is published with the model and is what request time uses (film statistics move
  slowly compared with a 48 h retrain, and a snapshot costs no Redis read per request).
- `UserStates`: per-user state of a batch. Offline from the events before `as_of`
  (`UserTotals`); at request time from the live per-user mirror and recent plays
  (`live_user_state`).
`assemble` turns candidates + both into the feature matrix; it is the only place a
feature is defined.
"""
from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import scipy.sparse as sp

from app.recsys.data.dataset import DAY_S, Dataset, Interactions
from app.recsys.data.idmap import IdMap
from app.recsys.ranking.candidates import Candidates
from app.schema import EVENT_TYPES, NO_RATING

FILM_FEATURES = ("i_viewers_share", "i_plays_share", "i_completion", "i_avg_rating", "i_trend", "i_days_since_last",
                 "i_age")
USER_FEATURES = ("u_films", "u_events", "u_avg_rating", "u_days_since_last")
PAIR_FEATURES = ("n_sources", "genre_match", "pop_vs_user_pref")
# Trending as a feature: each viewer counts 2^(-age / half-life), half-life a share of the history
# (a fixed number of days means nothing on a 20-year imported history and too much on a week).
TREND_HALF_LIFE_SHARE = 0.05
_PLAY, _COMPLETE = EVENT_TYPES.index("play"), EVENT_TYPES.index("complete")


def feature_names(sources: Sequence[str]) -> list[str]:
    """Column names of `assemble`'s matrix for these first-level sources (in order)."""
    return [*(f"{kind}_{s}" for s in sources for kind in ("s", "r")), *PAIR_FEATURES, *FILM_FEATURES,
            *USER_FEATURES]


@dataclass(frozen=True, eq=False)
class FilmSnapshot:
    """Per-film features as of `as_of`, rows aligned with `items`; published with a two-level model."""

    items: IdMap
    values: np.ndarray  # (films, FILM_FEATURES) float32, NaN = unknown (e.g. never rated)
    genres: sp.csr_matrix  # (films, genres), each row sums to 1 over the film's genres (0 without)
    as_of: float  # epoch seconds
    span: float  # seconds of history the relative times are divided by

    @property
    def viewers_share(self) -> np.ndarray:
        return self.values[:, FILM_FEATURES.index("i_viewers_share")]

    @property
    def trend(self) -> np.ndarray:
        return self.values[:, FILM_FEATURES.index("i_trend")]

    @functools.cached_property
    def genre_entries(self) -> tuple[np.ndarray, np.ndarray]:
        """(genre index, share) of each film's stored genre entries, (films, most genres of a film),
        in the CSR's stored order and padded with (0, 0.0): sums over them in column order are
        scipy's sums (a float32 row product adds entries in stored order; + 0.0 changes nothing)
        without a sparse matrix per call."""
        g = self.genres.tocsr()
        counts = np.diff(g.indptr)
        width = int(counts.max()) if len(counts) else 0
        slot = np.arange(g.nnz) - np.repeat(g.indptr[:-1], counts)
        rows = np.repeat(np.arange(g.shape[0]), counts)
        index = np.zeros((g.shape[0], width), dtype=np.int64)
        share = np.zeros((g.shape[0], width), dtype=np.float32)
        index[rows, slot], share[rows, slot] = g.indices, g.data
        return index, share

    def pack(self) -> bytes:
        """npz bytes (no pickle): the request-time copy."""
        buf = io.BytesIO()
        g = self.genres.tocsr()
        np.savez(buf, item_ids=self.items.external, values=self.values, g_data=g.data, g_indices=g.indices,
                 g_indptr=g.indptr, g_shape=np.array(g.shape), as_of=np.float64(self.as_of),
                 span=np.float64(self.span))
        return buf.getvalue()

    @classmethod
    def unpack(cls, raw: bytes) -> FilmSnapshot:
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            genres = sp.csr_matrix((z["g_data"], z["g_indices"], z["g_indptr"]), shape=tuple(z["g_shape"]))
            return cls(IdMap(z["item_ids"]), z["values"], genres, float(z["as_of"]), float(z["span"]))


def _before(events: Interactions, as_of: float) -> Interactions:
    """The events a feature at `as_of` may read: strictly before it (the leakage guarantee)."""
    return events.select(events.ts < as_of)


def _check_as_of(dataset: Dataset, as_of: float) -> None:
    if dataset.matrix.nnz and float(dataset.last_ts.max()) >= as_of:
        raise ValueError(f"the training matrix holds events at or after as_of={as_of}: features would leak")


def film_snapshot(dataset: Dataset, events: Interactions, as_of: float,
                  genres: sp.csr_matrix | None = None) -> FilmSnapshot:
    """Per-film features as of `as_of`: viewers and recency from the first-level training matrix
    (`dataset`, which must end before `as_of`), play/complete/rating counts from `events` strictly
    before `as_of` (whatever else `events` holds)."""
    _check_as_of(dataset, as_of)
    known = _before(events, as_of)
    n = len(dataset.items)
    col = dataset.items.to_index(known.film_id)
    ok = col >= 0
    col, kind, rating = col[ok], known.event_type[ok], known.rating[ok]
    span = max(as_of - float(known.ts.min()), DAY_S) if len(known) else DAY_S
    m = dataset.matrix
    viewers = np.bincount(m.indices, minlength=n).astype(np.float64)
    n_users = max(int((np.diff(m.indptr) > 0).sum()), 1)
    # trending: each viewer counts once, by the age of their latest event with the film
    trend = np.bincount(m.indices, minlength=n,
                        weights=np.exp2(-(as_of - dataset.last_ts) / (TREND_HALF_LIFE_SHARE * span)))
    plays = np.bincount(col[kind == _PLAY], minlength=n).astype(np.float64)
    completes = np.bincount(col[kind == _COMPLETE], minlength=n).astype(np.float64)
    rated = rating > NO_RATING
    rating_sum = np.bincount(col[rated], weights=rating[rated], minlength=n)
    ratings = np.bincount(col[rated], minlength=n)
    # per film, the ages (as_of - t > 0) of its newest and oldest event: a column min (1 / max of 1 / age)
    with np.errstate(divide="ignore"):
        newest_age = 1.0 / _column_max(m, 1.0 / (as_of - dataset.last_ts))
    oldest_age = _column_max(m, as_of - dataset.first_ts)
    seen = viewers > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        values = np.column_stack([
            viewers / n_users,
            plays / max(plays.sum(), 1.0) * n,
            np.where(plays > 0, completes / plays, np.nan),
            np.where(ratings > 0, rating_sum / ratings, np.nan),
            trend / max(trend.sum(), 1e-12) * n,
            np.where(seen, newest_age / span, np.nan),
            np.where(seen, oldest_age / span, np.nan),
        ]).astype(np.float32)
    if genres is None:
        genres = sp.csr_matrix((n, 0), dtype=np.float32)
    return FilmSnapshot(dataset.items, values, genres.tocsr().astype(np.float32), float(as_of), float(span))


def _column_max(matrix: sp.csr_matrix, values: np.ndarray) -> np.ndarray:
    """Per column, the largest of `values` (positive, aligned with `matrix.data`); 0 for an empty column."""
    return sp.csr_matrix((values, matrix.indices, matrix.indptr), shape=matrix.shape).max(axis=0).toarray().ravel()


@dataclass(frozen=True, eq=False)
class UserStates:
    """Per-user state of one batch (row i = the batch's user i)."""

    films: np.ndarray  # distinct films
    events: np.ndarray
    rating_sum: np.ndarray
    ratings: np.ndarray
    last_seen: np.ndarray  # epoch seconds, NaN = never
    genre_share: np.ndarray  # (users, genres), rows sum to 1 (0 without genres)
    pop_pref: np.ndarray  # mean viewer share of the user's films


@dataclass(frozen=True, eq=False)
class UserTotals:
    """Per-user counts over every user of a training matrix, as of `as_of` (offline)."""

    events: np.ndarray
    rating_sum: np.ndarray
    ratings: np.ndarray
    last_seen: np.ndarray

    @classmethod
    def of(cls, dataset: Dataset, events: Interactions, as_of: float) -> UserTotals:
        """Event and rating counts from `events` strictly before `as_of`; the last visit from the
        first-level training matrix (`dataset`, which must end before `as_of`)."""
        _check_as_of(dataset, as_of)
        known = _before(events, as_of)
        row = dataset.users.to_index(known.user_id)
        ok = row >= 0
        row, rating = row[ok], known.rating[ok]
        n = len(dataset.users)
        rated = rating > NO_RATING
        indptr = dataset.matrix.indptr
        active = np.flatnonzero(np.diff(indptr) > 0)
        last = np.full(n, np.nan)
        if len(active):
            last[active] = np.maximum.reduceat(dataset.last_ts, indptr[active])
        return cls(np.bincount(row, minlength=n).astype(np.float64),
                   np.bincount(row[rated], weights=rating[rated], minlength=n),
                   np.bincount(row[rated], minlength=n).astype(np.float64), last)

    def states(self, indices: np.ndarray, seen: sp.csr_matrix, snapshot: FilmSnapshot) -> UserStates:
        """The batch `indices` (rows of the training matrix); `seen` = their rows of it."""
        binary = (seen > 0).astype(np.float32)
        films = np.asarray(binary.sum(axis=1)).ravel()
        return UserStates(films, self.events[indices], self.rating_sum[indices], self.ratings[indices],
                          self.last_seen[indices], _shares(binary @ snapshot.genres),
                          _mean_over(binary, snapshot.viewers_share, films))


def live_user_state(record: Mapping[str, float] | None, film_indices: Sequence[int],
                    snapshot: FilmSnapshot) -> UserStates:
    """One user's state at request time: the live mirror's counts (`record`: events, ratings,
    rating_sum, last_seen; None = unknown) and their recent films (snapshot indices, -1 = unknown)."""
    known = np.array(sorted({int(f) for f in film_indices if f >= 0}), dtype=np.int64)
    films = np.array([float(len(known))])
    record = record or {}

    def value(key: str, default: float) -> np.ndarray:
        return np.array([float(record.get(key, default))])

    # the batch path's `binary @ genres` and `binary @ viewers_share` of a one-row `binary`, summed in
    # scipy's order (films ascending; float32 and float64 as there) without building the matrix
    index, share = snapshot.genre_entries
    counts = np.zeros((1, snapshot.genres.shape[1]), dtype=np.float32)
    for film in known.tolist():
        np.add.at(counts[0], index[film], share[film])
    viewers = np.cumsum(snapshot.viewers_share[known].astype(np.float64))  # sequential, as csr_matvec
    pop_pref = np.array([viewers[-1] if len(viewers) else 0.0]) / np.maximum(films, 1.0)
    last = value("last_seen", np.nan)
    return UserStates(films, value("events", len(known)), value("rating_sum", 0.0), value("ratings", 0.0),
                      np.where(last > 0, last, np.nan), _shares(counts), pop_pref)


def _shares(counts: sp.spmatrix | np.ndarray) -> np.ndarray:
    dense = np.asarray(counts.todense() if sp.issparse(counts) else counts, dtype=np.float64)
    total = dense.sum(axis=1, keepdims=True)
    return np.divide(dense, total, out=np.zeros_like(dense), where=total > 0).astype(np.float32)


def _mean_over(binary: sp.csr_matrix, per_film: np.ndarray, films: np.ndarray) -> np.ndarray:
    return np.asarray(binary @ per_film.astype(np.float64)).ravel() / np.maximum(films, 1.0)


_MATCH_BLOCK = 1 << 18  # pairs per block of genre matching (x the most genres of a film, float32)


def _genre_match(snapshot: FilmSnapshot, rows: np.ndarray, items: np.ndarray, shares: np.ndarray) -> np.ndarray:
    """Per pair, the film's genre shares . the user's: what scipy's `genres[items].multiply(shares[rows])
    .sum(axis=1)` gives bit for bit (float32 products added in each film's stored entry order),
    ~20x faster for a request's few hundred pairs and without a sparse copy of every pair's genres."""
    index, share = snapshot.genre_entries
    out = np.zeros(len(rows), dtype=np.float32)
    if not index.shape[1]:
        return out
    for lo in range(0, len(rows), _MATCH_BLOCK):
        r, i = rows[lo:lo + _MATCH_BLOCK], items[lo:lo + _MATCH_BLOCK]
        products = share[i] * shares[r[:, None], index[i]]
        out[lo:lo + _MATCH_BLOCK] = np.cumsum(products, axis=1)[:, -1]  # left to right, as scipy
    return out


def assemble(candidates: Candidates, snapshot: FilmSnapshot, users: UserStates, now: float) -> np.ndarray:
    """The feature matrix (pairs, feature_names(candidates.sources)), float32, NaN = missing."""
    rows, items = candidates.rows, candidates.items
    width = len(candidates.sources)
    source_block = np.empty((len(rows), 2 * width), dtype=np.float32)
    source_block[:, 0::2] = candidates.scores
    source_block[:, 1::2] = candidates.ranks
    genre_match = _genre_match(snapshot, rows, items, users.genre_share)
    with np.errstate(divide="ignore", invalid="ignore"):
        pair = np.column_stack([
            candidates.n_sources,
            genre_match,
            snapshot.viewers_share[items] / np.maximum(users.pop_pref[rows], 1e-9),
        ])
        user = np.column_stack([
            np.log1p(users.films),
            np.log1p(users.events),
            np.where(users.ratings > 0, users.rating_sum / users.ratings, np.nan),
            (now - users.last_seen) / snapshot.span,
        ])
    return np.hstack([source_block, pair.astype(np.float32), snapshot.values[items],
                      user.astype(np.float32)[rows]])
