"""Vectorised generation of browsing and watching sessions over a `World`.

Sessions start more often in the evening than at night (HOURLY). A session is: a home page view, a row of popular films shown (impressions),
then one to six engagements. An engagement is a shown film the user clicked:
film page view, click, then with a probability rising with taste match a play
with progress heartbeats every 15 minutes, a complete when finished, sometimes
a rating (1..10, higher for a better match); unplayed films are sometimes added
to the watchlist. Everything is built as numpy columns (no per-event Python)
so a million events take seconds.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Iterator

import numpy as np

from app.events import Event
from app.schema import EVENT_TYPES, NO_POSITION, NO_RATING
from app.simulator.world import EXPLORE_SHARE, World

PROGRESS_EVERY_S = 900.0
MAX_ENGAGEMENTS = 6
HOME_ROW = 3
MAX_FILM_S = 10_800.0
# An engagement lasts 60 s of browsing before the film and 150 s after it.
BROWSE_BEFORE_S, BROWSE_AFTER_S = 60.0, 150.0
MAX_SESSION_S = 5.0 + MAX_ENGAGEMENTS * (BROWSE_BEFORE_S + MAX_FILM_S + BROWSE_AFTER_S)
SOURCES: tuple[str, ...] = ("", "home")
# Relative share of session starts by hour of day (UTC): quiet nights, an evening peak.
HOURLY = np.array([3, 2, 1, 1, 1, 1, 2, 3, 4, 4, 4, 5, 5, 5, 5, 5, 6, 7, 9, 10, 10, 9, 7, 5], dtype=float)
_TYPE = {name: code for code, name in enumerate(EVENT_TYPES)}
# Byte -> its two hex digits as two UCS-4 code points packed in one uint64.
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8).astype(np.uint32)
_BYTE_HEX = np.stack([_HEX[np.arange(256) >> 4], _HEX[np.arange(256) & 0x0F]], axis=1).copy().view(np.uint64).ravel()


@dataclass(frozen=True)
class EventColumns:
    """Events as numpy columns in `app.schema.INTERACTION_COLUMNS` order, sorted by ts."""

    event_id: np.ndarray
    user_id: np.ndarray
    film_id: np.ndarray
    event_type: np.ndarray
    ts: np.ndarray
    session_id: np.ndarray
    watch_seconds: np.ndarray
    duration_seconds: np.ndarray
    rating: np.ndarray
    source: np.ndarray
    model_version: np.ndarray
    position: np.ndarray

    def __len__(self) -> int:
        return len(self.ts)

    def __iter__(self) -> Iterator[Event]:
        """Events as `app.events.Event` with plain Python values.

        Streaming is cheap; to hold a million in a list, build it with `gc`
        disabled (the cyclic collector otherwise dominates the time).
        """
        return map(Event._make, zip(*(column.tolist() for column in self.columns())))

    def columns(self) -> list[np.ndarray]:
        """Columns in schema order (e.g. for a columnar ClickHouse insert)."""
        return [getattr(self, f.name) for f in fields(self)]


def uuid4_strings(rng: np.random.Generator, n: int) -> np.ndarray:
    """n random version-4 UUID strings, formatted with numpy (fast for millions)."""
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    # Built as UCS-4 code points so the array is viewed as str without a conversion.
    digits = _BYTE_HEX[raw].view(np.uint32)
    out = np.empty((n, 36), dtype=np.uint32)
    out[:, [8, 13, 18, 23]] = ord("-")
    for src, dst, width in ((0, 0, 8), (8, 9, 4), (12, 14, 4), (16, 19, 4), (20, 24, 12)):
        out[:, dst : dst + width] = digits[:, src : src + width]
    return out.view("<U36").ravel()


def pick(rng: np.random.Generator, cdf: np.ndarray, n: int) -> np.ndarray:
    """Indices drawn from an unnormalised cumulative distribution."""
    return np.minimum(np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right"), len(cdf) - 1)


def choose_films(
    world: World,
    rng: np.random.Generator,
    user_idx: np.ndarray,
    at_ts: np.ndarray,
    explore_share: float = EXPLORE_SHARE,
    rounds: int = 10,
) -> np.ndarray:
    """A film index per user: genre from the user's taste, then a film of it by popularity.

    A film not yet released at `at_ts` is never chosen; a new release is
    accepted with its ramping appeal (rejection sampling). The few draws still
    rejected after `rounds` fall back to the most popular back-catalog film.
    """
    cat = world.catalog
    global_cdf = np.cumsum(cat.popularity)
    genre_cdf = np.cumsum(cat.popularity[None, :] * cat.genre_weights.T, axis=1)
    genre_cdf[genre_cdf[:, -1] == 0] = global_cdf
    out = np.full(len(user_idx), -1, dtype=np.int64)
    todo = np.arange(len(user_idx))
    for _ in range(rounds):
        if not todo.size:
            break
        taste_cdf = np.cumsum(world.audience.tastes[user_idx[todo]], axis=1)
        genre = np.minimum((taste_cdf < rng.random(todo.size)[:, None] * taste_cdf[:, -1:]).sum(axis=1), taste_cdf.shape[1] - 1)
        genre[rng.random(todo.size) < explore_share] = -1
        candidate = np.empty(todo.size, dtype=np.int64)
        for g in np.unique(genre):
            sel = genre == g
            candidate[sel] = pick(rng, global_cdf if g < 0 else genre_cdf[g], int(sel.sum()))
        accept = rng.random(todo.size) < world.appeal(candidate, at_ts[todo])
        out[todo[accept]] = candidate[accept]
        todo = todo[~accept]
    if todo.size:
        old = cat.release_ts < world.window_start
        out[todo] = int(np.argmax(np.where(old, cat.popularity, -1.0)))
    return out


def play_probability(affinity: np.ndarray) -> np.ndarray:
    """A clicked film is played more often the better it matches the user's taste."""
    return np.clip(0.35 + 0.6 * affinity, 0.0, 0.95)


def complete_probability(affinity: np.ndarray) -> np.ndarray:
    return 0.25 + 0.7 * affinity


def draw_ratings(rng: np.random.Generator, affinity: np.ndarray) -> np.ndarray:
    """Whole ratings 1..10, higher for a better taste match, with noise."""
    return np.clip(np.round(2.0 + 8.0 * affinity + rng.normal(0.0, 1.2, len(affinity))), 1.0, 10.0)


def _rows(sess: np.ndarray, ts: np.ndarray, kind: str, **values: np.ndarray | float) -> dict[str, np.ndarray]:
    n = len(sess)
    row = {"sess": sess, "ts": ts, "type": np.full(n, _TYPE[kind], dtype=np.int8)}
    defaults = {"user": -1, "film": -1, "watch": 0.0, "dur": 0.0, "rating": NO_RATING, "position": NO_POSITION, "source": 0}
    for name, default in defaults.items():
        row[name] = np.broadcast_to(values.get(name, default), (n,))
    return row


def _expand(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(owner index, rank within owner) for `counts[i]` rows per owner i."""
    owner = np.repeat(np.arange(len(counts)), counts)
    first = np.cumsum(counts) - counts
    return owner, np.arange(len(owner)) - first[owner]


def _session_starts(rng: np.random.Generator, n: int, start: float, end: float) -> np.ndarray:
    """Uniform times in [start, end) thinned by the hour-of-day profile (rejection sampling)."""
    out = rng.uniform(start, end, n)
    for _ in range(30):
        hour = ((out // 3600) % 24).astype(np.int64)
        redo = rng.random(n) >= HOURLY[hour] / HOURLY.max()
        if not redo.any():
            break
        out[redo] = rng.uniform(start, end, int(redo.sum()))
    return out


def _session_batch(world: World, rng: np.random.Generator, n_sessions: int) -> dict[str, np.ndarray]:
    """Rows (not yet ids) of `n_sessions` independent sessions, ordered by session then time."""
    cat, ws, we = world.catalog, world.window_start, world.window_end
    user = pick(rng, np.cumsum(world.audience.activity), n_sessions)
    start = _session_starts(rng, n_sessions, ws, we)
    n_eng = np.minimum(1 + rng.poisson(1.2, n_sessions), MAX_ENGAGEMENTS)
    sess, rank = _expand(n_eng)
    e_user = user[sess]
    # Films must be released by the (possibly shifted, see below) session start.
    film = choose_films(world, rng, e_user, np.minimum(start, we - MAX_SESSION_S)[sess])
    aff = world.affinity(e_user, film)
    n = len(sess)
    dur = cat.duration_s[film]
    played = rng.random(n) < play_probability(aff)
    completed = played & (rng.random(n) < complete_probability(aff))
    watch = np.where(completed, dur, np.where(played, np.round(rng.uniform(0.03, 0.9, n) * dur), 0.0))
    rated = rng.random(n) < np.where(completed, 0.4, np.where(played, 0.1, 0.0))
    rating = draw_ratings(rng, aff)
    listed = ~played & (rng.random(n) < 0.25)
    click_at = rng.uniform(2.0, 20.0, n)
    play_at = click_at + rng.uniform(5.0, 40.0, n)
    length = BROWSE_BEFORE_S + watch + BROWSE_AFTER_S
    ends = np.cumsum(length)
    offset = ends - length - (ends - length)[(np.cumsum(n_eng) - n_eng)][sess]
    session_len = 5.0 + np.bincount(sess, weights=length, minlength=n_sessions)
    # Whole sessions fit in the window: none ends in the future.
    start = np.maximum(ws, np.minimum(start, we - session_len))
    t0 = start[sess] + 5.0 + offset
    position = rng.integers(0, 12, n)

    home_sess, home_rank = _expand(np.full(n_sessions, HOME_ROW))
    home_film = choose_films(world, rng, user[home_sess], start[home_sess], explore_share=1.0)
    parts = [
        _rows(np.arange(n_sessions), start, "page_view", user=user),
        _rows(home_sess, start[home_sess] + 1.0, "impression", user=user[home_sess], film=home_film, position=home_rank, source=1),
        _rows(sess, t0, "impression", user=e_user, film=film, position=position, source=1),
        _rows(sess, t0 + click_at, "click", user=e_user, film=film, position=position, source=1),
        _rows(sess, t0 + click_at + 1.0, "page_view", user=e_user, film=film),
    ]
    p = np.flatnonzero(played)
    parts.append(_rows(sess[p], t0[p] + play_at[p], "play", user=e_user[p], film=film[p], dur=dur[p]))
    beats = np.where(completed, np.ceil(dur / PROGRESS_EVERY_S) - 1, np.ceil(watch / PROGRESS_EVERY_S)).astype(np.int64)
    owner, k = _expand(np.where(played, beats, 0))
    reached = np.minimum((k + 1) * PROGRESS_EVERY_S, watch[owner])
    parts.append(
        _rows(sess[owner], t0[owner] + play_at[owner] + reached, "progress",
              user=e_user[owner], film=film[owner], watch=reached, dur=dur[owner])
    )
    c = np.flatnonzero(completed)
    parts.append(_rows(sess[c], t0[c] + play_at[c] + dur[c], "complete", user=e_user[c], film=film[c], watch=dur[c], dur=dur[c]))
    r = np.flatnonzero(rated)
    rate_ts = t0[r] + play_at[r] + watch[r] + rng.uniform(10.0, 120.0, len(r))
    parts.append(_rows(sess[r], rate_ts, "rate", user=e_user[r], film=film[r], rating=rating[r]))
    w = np.flatnonzero(listed)
    parts.append(_rows(sess[w], t0[w] + click_at[w] + rng.uniform(5.0, 30.0, len(w)), "watchlist_add", user=e_user[w], film=film[w]))

    rows = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
    order = np.lexsort((rows["ts"], rows["sess"]))
    rows = {name: column[order] for name, column in rows.items()}
    rows["session_ids"] = uuid4_strings(rng, n_sessions)
    return rows


def generate_events(world: World, n_events: int, rng: np.random.Generator, ids_rng: np.random.Generator) -> EventColumns:
    """Exactly `n_events` events of whole sessions (the last one cut), sorted by time."""
    if n_events < 0:
        raise ValueError(f"events must be >= 0, got {n_events}")
    batches: list[dict[str, np.ndarray]] = []
    total, per_session = 0, 20.0
    while total < n_events:
        n_sessions = int((n_events - total) / per_session * 1.05) + 1
        batch = _session_batch(world, rng, n_sessions)
        batches.append(batch)
        total += len(batch["ts"])
        per_session = max(len(batch["ts"]) / n_sessions, 1.0)
    # Session numbers made global across batches; their id strings are looked up once at the end.
    first_session = np.cumsum([0] + [len(b["session_ids"]) for b in batches])
    for batch, offset in zip(batches, first_session):
        batch["sess"] = batch["sess"] + offset
    names = ("ts", "type", "user", "film", "watch", "dur", "rating", "position", "source", "sess")
    rows = {
        name: np.concatenate([b[name] for b in batches])[:n_events] if batches else np.empty(0, np.int64)
        for name in names
    }
    session_ids = np.concatenate([b["session_ids"] for b in batches]) if batches else np.empty(0, "U36")
    lo, hi = np.ceil(world.window_start * 1000) / 1000, np.floor(world.window_end * 1000) / 1000
    ts = np.clip(np.round(rows["ts"] * 1000) / 1000, lo, hi)
    order = np.argsort(ts, kind="stable")
    film = rows["film"][order].astype(np.int64)
    user = rows["user"][order].astype(np.int64)
    return EventColumns(
        event_id=uuid4_strings(ids_rng, n_events),
        user_id=world.audience.user_ids[user] if n_events else np.empty(0, np.int64),
        film_id=np.where(film >= 0, world.catalog.film_ids[np.maximum(film, 0)], 0),
        event_type=np.array(EVENT_TYPES)[rows["type"][order].astype(np.int64)],
        ts=ts[order],
        session_id=session_ids[rows["sess"][order]],
        watch_seconds=rows["watch"][order].astype(float),
        duration_seconds=rows["dur"][order].astype(float),
        rating=rows["rating"][order].astype(float),
        source=np.array(SOURCES)[rows["source"][order].astype(np.int64)],
        model_version=np.full(n_events, "", dtype="U1"),
        position=rows["position"][order].astype(np.int64),
    )
