"""Interactions as columnar arrays, event weighting, and the user x item matrix.

Training reads tens of millions of events; keeping them as numpy columns (as
ClickHouse returns them with `columnar=True`) avoids a Python object per event,
and every step below is vectorised.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

import numpy as np
import scipy.sparse as sp

from app.recsys.data.idmap import IdMap
from app.schema import EVENT_TYPES, NO_RATING, WATCH_EVENT_TYPES

DAY_S = 86_400.0
REQUIRED_COLUMNS = ("user_id", "film_id", "event_type", "ts")
OPTIONAL_COLUMNS = ("watch_seconds", "duration_seconds", "rating")
_DTYPES: dict[str, type] = {
    "user_id": np.int64,
    "film_id": np.int64,
    "event_type": np.int8,
    "ts": np.float64,
    "watch_seconds": np.float32,
    "duration_seconds": np.float32,
    "rating": np.float32,
}
_EVENT_CODES = {name: code for code, name in enumerate(EVENT_TYPES)}


def event_codes(values: np.ndarray | Sequence[str] | Sequence[int]) -> np.ndarray:
    """int8 codes (index in `EVENT_TYPES`) from names or codes; unknown ones raise."""
    arr = np.asarray(values)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int8)
    if np.issubdtype(arr.dtype, np.integer):
        if arr.min() < 0 or arr.max() >= len(EVENT_TYPES):
            raise ValueError(f"event_type codes must be in 0..{len(EVENT_TYPES) - 1}")
        return arr.astype(np.int8)
    names, inverse = np.unique(arr.astype(str), return_inverse=True)
    unknown = [n for n in names if n not in _EVENT_CODES]
    if unknown:
        raise ValueError(f"unknown event_type(s) {unknown[:5]}; known: {EVENT_TYPES}")
    return np.array([_EVENT_CODES[n] for n in names], dtype=np.int8)[inverse.ravel()]


def _epoch_seconds(values: np.ndarray | Sequence) -> np.ndarray:
    """Epoch seconds from numbers, datetime64 or datetime objects (naive = UTC, as ClickHouse stores)."""
    arr = np.asarray(values)
    if np.issubdtype(arr.dtype, np.datetime64):
        return arr.astype("datetime64[us]").astype(np.int64) / 1e6
    if arr.dtype == object and arr.size and isinstance(arr.flat[0], datetime):
        return np.array(
            [(d if d.tzinfo else d.replace(tzinfo=timezone.utc)).timestamp() for d in arr], dtype=np.float64
        )
    return arr.astype(np.float64)


@dataclass(frozen=True)
class Interactions:
    """Events as aligned numpy columns (names as in `app.schema.INTERACTION_COLUMNS`)."""

    user_id: np.ndarray
    film_id: np.ndarray
    event_type: np.ndarray  # int8 code = index in EVENT_TYPES
    ts: np.ndarray  # float64 epoch seconds
    watch_seconds: np.ndarray
    duration_seconds: np.ndarray
    rating: np.ndarray  # 1..10, NO_RATING (0) = none

    def __post_init__(self) -> None:
        n = len(self.user_id)
        for f in fields(self):
            col = getattr(self, f.name)
            if not isinstance(col, np.ndarray) or col.ndim != 1 or len(col) != n:
                raise ValueError(f"column {f.name} must be a 1-d array of length {n}")
            if col.dtype != _DTYPES[f.name]:
                raise ValueError(f"column {f.name} must be {np.dtype(_DTYPES[f.name])}, got {col.dtype}")

    @classmethod
    def from_columns(cls, columns: Mapping[str, np.ndarray | Sequence]) -> Interactions:
        """Build from a column dict (e.g. a columnar ClickHouse result); optional columns default to 0."""
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise ValueError(f"missing interaction column(s): {missing}")
        n = len(columns["user_id"])
        out: dict[str, np.ndarray] = {}
        for name, dtype in _DTYPES.items():
            raw = columns.get(name)
            if raw is None:
                out[name] = np.zeros(n, dtype=dtype)
            elif name == "event_type":
                out[name] = event_codes(raw)
            elif name == "ts":
                out[name] = _epoch_seconds(raw)
            else:
                out[name] = np.asarray(raw).astype(dtype, copy=False)
        return cls(**out)

    def __len__(self) -> int:
        return len(self.user_id)

    def select(self, mask: np.ndarray) -> Interactions:
        """Rows where `mask` is true (or rows at the given integer positions)."""
        return Interactions(**{f.name: getattr(self, f.name)[mask] for f in fields(self)})

    def split_by_time(self, t: float) -> tuple[Interactions, Interactions]:
        """(events before t, events at or after t)."""
        before = self.ts < t
        return self.select(before), self.select(~before)

    @property
    def max_ts(self) -> float:
        """Latest event time; 0.0 when empty."""
        return float(self.ts.max()) if len(self) else 0.0


DEFAULT_BASE_WEIGHTS: Mapping[str, float] = {
    # A shown film says nothing; a page view has no film. A click is interest,
    # a play more; completing a film is the strongest implicit signal; an explicit
    # rating is strong but adjusted by its value below.
    "page_view": 0.0,
    "impression": 0.0,
    "click": 1.0,
    "play": 2.0,
    "progress": 0.0,
    "complete": 4.0,
    "rate": 3.0,
    "watchlist_add": 2.0,
}


RATING_SCOPES = ("pair", "event")


@dataclass(frozen=True)
class EventWeights:
    """How much a user's events with a film say about them liking it: one weight per (user, film).

    Per event:  base[event_type] + completion_bonus * clip(watch_seconds / duration_seconds, 0, 1)
    (watch events), summed per (user, film) in `build_dataset`. Then, per pair:

    * `binary`: the pair weighs 1 whatever its events (only which films a user met counts);
    * rating (r in 1..10): x (mean rating of the pair's rated events / 10) ** rating_exponent, so a
      low rating counts less but still counts (on MovieLens a rated film is a watched film:
      dropping low ratings loses recall). `rating_scope="event"` applies the factor to each rated
      event instead (the weighting of runs recorded before the pair scope; there the factor
      scales only the rate event's share of an imported film's ~11, which made it inert);
    * `half_life_days`: x 2^(-age / half_life) by the age of the pair's latest event at the
      newest event of the data (None: no decay).

    ALS divides the weights by their mean over stored pairs before its `alpha`
    (app/recsys/models/als.py), so these set only the relative weights. The
    retrain's tuning searches `rating_exponent`, `binary` and the half-life
    (app/recsys/tuning); the defaults here are the neutral point of that search.
    """

    base: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_BASE_WEIGHTS))
    completion_bonus: float = 2.0
    rating_exponent: float = 2.0
    rating_scope: str = "pair"
    binary: bool = False
    half_life_days: float | None = None

    def __post_init__(self) -> None:
        unknown = set(self.base) - set(EVENT_TYPES)
        if unknown:
            raise ValueError(f"unknown event types in weights: {sorted(unknown)}")
        if any(w < 0 for w in self.base.values()) or self.completion_bonus < 0:
            raise ValueError("event weights must be >= 0")
        if self.rating_exponent < 0:
            raise ValueError("rating_exponent must be >= 0")
        if self.rating_scope not in RATING_SCOPES:
            raise ValueError(f"rating_scope must be one of {RATING_SCOPES}, got {self.rating_scope!r}")
        if self.half_life_days is not None and self.half_life_days <= 0:
            raise ValueError("half_life_days must be > 0 or None")

    def base_table(self) -> np.ndarray:
        """Base weight per event code (missing types weigh 0)."""
        return np.array([float(self.base.get(t, 0.0)) for t in EVENT_TYPES], dtype=np.float32)

    def weights(self, interactions: Interactions) -> np.ndarray:
        """Per-event weight before the per-pair steps, float32, vectorised (> 0: the event counts)."""
        w = self.base_table()[interactions.event_type]
        watch = np.isin(interactions.event_type, [_EVENT_CODES[t] for t in WATCH_EVENT_TYPES])
        has_duration = watch & (interactions.duration_seconds > 0)
        if self.completion_bonus and has_duration.any():
            frac = np.zeros(len(interactions), dtype=np.float32)
            frac[has_duration] = np.clip(
                interactions.watch_seconds[has_duration] / interactions.duration_seconds[has_duration], 0.0, 1.0
            )
            w = w + np.float32(self.completion_bonus) * frac
        rated = interactions.rating > NO_RATING
        if self.rating_scope == "event" and self.rating_exponent and rated.any():
            factor = np.ones(len(interactions), dtype=np.float32)
            factor[rated] = (np.clip(interactions.rating[rated], 0.0, 10.0) / 10.0) ** self.rating_exponent
            w = w * factor
        return w.astype(np.float32, copy=False)

    def pair_weights(self, sums: np.ndarray, rating_sums: np.ndarray, rated: np.ndarray, age_s: np.ndarray
                     ) -> np.ndarray:
        """The per-pair steps (binary, rating, decay) over summed event weights, the pairs' summed
        ratings and rated-event counts, and the age of their latest event in seconds."""
        out = np.ones(len(sums), dtype=np.float64) if self.binary else sums.astype(np.float64)
        if self.rating_scope == "pair" and self.rating_exponent:
            has = rated > 0
            out[has] *= (np.clip(rating_sums[has] / rated[has], 0.0, 10.0) / 10.0) ** self.rating_exponent
        if self.half_life_days is not None:
            out *= np.exp2(-np.maximum(age_s, 0.0) / (self.half_life_days * DAY_S))
        return out.astype(np.float32)

    def params(self) -> dict[str, Any]:
        """JSON-ready, for run records next to the model's params."""
        return {
            "base": dict(self.base),
            "completion_bonus": self.completion_bonus,
            "rating_exponent": self.rating_exponent,
            "rating_scope": self.rating_scope,
            "binary": self.binary,
            "half_life_days": self.half_life_days,
        }

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> EventWeights:
        """Inverse of `params`; a record without `rating_scope` predates the pair scope (its weights were per event)."""
        return cls(**{"rating_scope": "event", **params})


@dataclass(frozen=True)
class Dataset:
    """The training matrix with its id maps.

    `matrix` is users x items, float32, the summed event weights of each pair.
    `first_ts` and `last_ts` are aligned with `matrix.data` (CSR order): epoch
    seconds of the first and the latest event of each stored pair.
    Popular/Trending use `last_ts` with `now` (the latest event time), the
    gate's holdout `first_ts`, so neither needs a second matrix.
    """

    users: IdMap
    items: IdMap
    matrix: sp.csr_matrix
    first_ts: np.ndarray
    last_ts: np.ndarray
    now: float

    def __post_init__(self) -> None:
        if self.matrix.shape != (len(self.users), len(self.items)):
            raise ValueError(f"matrix shape {self.matrix.shape} != ({len(self.users)}, {len(self.items)})")
        if self.first_ts.shape != self.matrix.data.shape or self.last_ts.shape != self.matrix.data.shape:
            raise ValueError("first_ts and last_ts must be aligned with matrix.data")

    @property
    def shape(self) -> tuple[int, int]:
        return self.matrix.shape


def build_dataset(
    interactions: Interactions,
    weights: EventWeights | None = None,
    users: IdMap | None = None,
    items: IdMap | None = None,
) -> Dataset:
    """Weighted user x item CSR from raw events (`EventWeights`: summed per pair, then the pair steps).

    Events without a film (film_id 0) or with zero weight are dropped; when
    `users`/`items` are given, events of other ids are dropped too (evaluation
    and incremental use keep the training maps).
    """
    weights = weights or EventWeights()
    w = weights.weights(interactions)
    keep = (interactions.film_id != 0) & (w > 0)
    if users is None:
        users = IdMap.from_ids(interactions.user_id[keep])
    if items is None:
        items = IdMap.from_ids(interactions.film_id[keep])
    rows = users.to_index(interactions.user_id)
    cols = items.to_index(interactions.film_id)
    keep &= (rows >= 0) & (cols >= 0)
    rows, cols, w, ts = rows[keep], cols[keep], w[keep], interactions.ts[keep]

    n_users, n_items = len(users), len(items)
    pair = rows * np.int64(max(n_items, 1)) + cols
    # One stable sort, then per-pair sums/maxima over runs: ~3x faster than np.unique's
    # inverse + bincount + maximum.at (loaded rows are nearly sorted by user already);
    # stable, so a pair's weights are summed in event order, in float64.
    order = np.argsort(pair, kind="stable")
    pair = pair[order]
    starts = np.flatnonzero(np.r_[True, pair[1:] != pair[:-1]]) if len(pair) else np.zeros(0, dtype=np.int64)
    uniq = pair[starts]
    sums = np.add.reduceat(w[order].astype(np.float64), starts)
    ts = ts[order]
    first_ts = np.minimum.reduceat(ts, starts).astype(np.float64)
    last_ts = np.maximum.reduceat(ts, starts).astype(np.float64)
    rating = interactions.rating[keep][order]
    is_rated = rating > NO_RATING
    if weights.rating_scope == "pair" and weights.rating_exponent and is_rated.any():
        rating_sums = np.add.reduceat(np.where(is_rated, rating, 0.0).astype(np.float64), starts)
        rated = np.add.reduceat(is_rated.astype(np.int64), starts)
    else:  # nothing to scale: skip two passes over the events
        rating_sums = rated = np.zeros(len(starts))
    data = weights.pair_weights(sums, rating_sums, rated, interactions.max_ts - last_ts)
    pair_rows = uniq // max(n_items, 1)
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(pair_rows, minlength=n_users), out=indptr[1:])
    matrix = sp.csr_matrix(
        (data, (uniq % max(n_items, 1)).astype(np.int32), indptr.astype(np.int32)), shape=(n_users, n_items)
    )
    return Dataset(users=users, items=items, matrix=matrix, first_ts=first_ts, last_ts=last_ts,
                   now=interactions.max_ts)
