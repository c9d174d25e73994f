"""The simulated world: a film catalog and an audience with planted tastes.

The taste structure is planted on purpose so that a personalised model has
something to find that popularity alone cannot explain: each user's taste is a
sparse Dirichlet mix over ~20 genres, and a user's film choice is
"pick a genre from my taste, then a film of that genre by popularity" most of
the time, and "pick by popularity" only for a small exploration share.

How sharp the taste is decides whether a model can learn it from a month of
traffic (a user plays only a handful of films in it): with tastes spread over
~4 genres and a steep Zipf(1) popularity (the top film 13% of all choices),
ALS lost to Popular on the `cinerec simulate` defaults. Now a user's favourite
genre holds ~64% of the taste and ~3 genres above 5% (concentration 0.05), and
the top film ~6% of choices (Zipf 0.8): ALS gets 1.5-2.5x Popular's NDCG@10
on a 7-day holdout (`bench/simulate.py --quality`; 1.5x on MovieLens).
Everything is a pure function of (users, films, seed, window), so tests,
benchmarks and the `cinerec simulate` command see the same world.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

GENRES: tuple[str, ...] = (
    "Action", "Adventure", "Animation", "Biography", "Comedy", "Crime", "Documentary",
    "Drama", "Family", "Fantasy", "History", "Horror", "Music", "Mystery", "Romance",
    "Sci-Fi", "Sport", "Thriller", "War", "Western",
)
# How common each genre is in the catalog (drama and comedy dominate, as on real sites).
_GENRE_FREQ = np.array([8, 5, 3, 2, 10, 5, 2, 12, 3, 3, 2, 4, 1, 3, 5, 4, 1, 6, 1, 1], dtype=float)
# Sparse tastes: a favourite genre holds ~64% of a user's mass, the top three ~94%.
TASTE_CONCENTRATION = 0.05
# Share of film choices made by popularity alone, ignoring taste.
EXPLORE_SHARE = 0.1
NEW_RELEASE_SHARE = 0.08
NEW_RELEASE_BOOST = 3.0
# A new release's appeal grows as 1 - exp(-age / RAMP): word of mouth.
NEW_RELEASE_RAMP_S = 7 * 86_400.0
# Base appeal ~ rank^-ZIPF_EXPONENT: the most popular of 1000 films gets ~6% of choices.
ZIPF_EXPONENT = 0.8
DAY_S = 86_400

_ADJECTIVES = (
    "Silent", "Last", "Broken", "Golden", "Hidden", "Crimson", "Frozen", "Endless", "Lost",
    "Wild", "Burning", "Distant", "Midnight", "Secret", "Electric", "Quiet", "Savage", "Paper",
)
_NOUNS = (
    "Harbor", "Empire", "Garden", "Signal", "River", "Kingdom", "Horizon", "Letter", "Machine",
    "Summer", "Detective", "Orchard", "Voyage", "Frontier", "Mirror", "Station", "Crown", "Echo",
)


@dataclass(frozen=True)
class Catalog:
    """Films as parallel arrays; index i is film id `film_ids[i]` (= i + 1)."""

    film_ids: np.ndarray  # int64
    titles: list[str]
    genre_weights: np.ndarray  # (films, genres), each row sums to 1 over the film's genres
    release_ts: np.ndarray  # epoch seconds, midnight UTC of the release date
    duration_s: np.ndarray  # film length, whole seconds
    popularity: np.ndarray  # base appeal, sums to 1

    def __len__(self) -> int:
        return len(self.film_ids)

    def genres_of(self, index: int) -> list[str]:
        return [GENRES[g] for g in np.flatnonzero(self.genre_weights[index])]

    def rows(self) -> list[tuple]:
        """Rows in `app.schema.FILM_COLUMNS` order for ClickHouse `films`."""
        return [
            (
                int(self.film_ids[i]),
                self.titles[i],
                self.genres_of(i),
                datetime.fromtimestamp(float(self.release_ts[i]), tz=timezone.utc).date(),
                float(self.duration_s[i]),
            )
            for i in range(len(self))
        ]


@dataclass(frozen=True)
class Audience:
    """Users as parallel arrays; index i is user id `user_ids[i]` (= i + 1)."""

    user_ids: np.ndarray  # int64
    tastes: np.ndarray  # (users, genres), rows sum to 1
    activity: np.ndarray  # probability that a session belongs to the user

    def __len__(self) -> int:
        return len(self.user_ids)


@dataclass(frozen=True)
class World:
    catalog: Catalog
    audience: Audience
    window_start: float
    window_end: float

    def affinity(self, user_idx: np.ndarray, film_idx: np.ndarray) -> np.ndarray:
        """Taste match in [0, 1] of each (user, film) pair: overlap of genre mixes."""
        return np.einsum(
            "ij,ij->i", self.audience.tastes[user_idx], self.catalog.genre_weights[film_idx]
        )

    def appeal(self, film_idx: np.ndarray, at_ts: np.ndarray) -> np.ndarray:
        """Share of a film's base appeal available at a time: 0 before release, ramping after."""
        age = at_ts - self.catalog.release_ts[film_idx]
        return np.where(age < 0, 0.0, -np.expm1(-np.maximum(age, 0.0) / NEW_RELEASE_RAMP_S))

    def true_appeal(self, user_idx: np.ndarray, film_idx: np.ndarray, at_ts: np.ndarray) -> np.ndarray:
        """How much each user wants each film, relative to an average film (1.0).

        It is the planted truth the history is drawn from (`history.choose_films`):
        the chance the user picks the film on their own -- taste over genres, then
        popularity within the genre, or popularity alone for the exploration
        share -- times its release ramp, times the number of films. A model is
        better the more of it the films it shows carry.
        """
        cat = self.catalog
        genre_mass = cat.popularity @ cat.genre_weights  # popularity held by each genre
        # chance of the film once the genre is drawn; a genre without films falls back to
        # popularity over the catalog, as choose_films does
        share = np.where(genre_mass > 0, cat.genre_weights[film_idx] / np.where(genre_mass > 0, genre_mass, 1.0), 1.0)
        within = cat.popularity[film_idx, None] * share
        by_taste = np.einsum("ij,ij->i", self.audience.tastes[user_idx], within)
        chance = (1.0 - EXPLORE_SHARE) * by_taste + EXPLORE_SHARE * cat.popularity[film_idx]
        return chance * self.appeal(film_idx, at_ts) * len(cat)


def build_world(users: int, films: int, seed: int, window_start: float, window_end: float) -> World:
    """The catalog and audience for a seed (independent of the number of events)."""
    if users < 1 or films < 1:
        raise ValueError(f"need at least one user and one film, got users={users} films={films}")
    if not window_start < window_end:
        raise ValueError("the history window must have a positive length")
    rng = np.random.default_rng([seed, 1])
    catalog = _catalog(rng, films, window_start, window_end)
    tastes = rng.dirichlet(np.full(len(GENRES), TASTE_CONCENTRATION), size=users)
    # Heavy-tailed activity: a few users watch a lot, most a little.
    activity = rng.lognormal(0.0, 1.0, size=users)
    audience = Audience(
        user_ids=np.arange(1, users + 1, dtype=np.int64),
        tastes=tastes,
        activity=activity / activity.sum(),
    )
    return World(catalog, audience, float(window_start), float(window_end))


def _catalog(rng: np.random.Generator, films: int, window_start: float, window_end: float) -> Catalog:
    n_genres = len(GENRES)
    # 1..3 genres per film, drawn without replacement by genre frequency (Gumbel top-k).
    k = rng.choice([1, 2, 3], size=films, p=[0.45, 0.4, 0.15])
    keys = np.log(_GENRE_FREQ / _GENRE_FREQ.sum()) + rng.gumbel(size=(films, n_genres))
    order = np.argsort(-keys, axis=1)
    chosen = np.arange(n_genres)[None, :] < k[:, None]
    genre_weights = np.zeros((films, n_genres))
    np.put_along_axis(genre_weights, order, chosen / k[:, None], axis=1)

    # Release dates: most films are back catalog (skewed to recent years); a few
    # are new releases inside the history window. At least one film is old so
    # there is always something to watch at the window start.
    start_day = int(window_start // DAY_S)
    end_day = int(window_end // DAY_S)
    n_new = min(int(round(films * NEW_RELEASE_SHARE)), films - 1)
    is_new = np.zeros(films, dtype=bool)
    is_new[rng.choice(films, size=n_new, replace=False)] = True
    age_days = np.minimum(rng.exponential(12 * 365.0, size=films), 60 * 365.0).astype(np.int64) + 1
    # ClickHouse `Date` starts at 1970-01-01.
    release_day = np.maximum(start_day - age_days, 0)
    release_day[is_new] = rng.integers(start_day, max(end_day, start_day + 1), size=n_new)
    release_ts = release_day.astype(float) * DAY_S

    ranks = rng.permutation(films) + 1.0
    popularity = ranks**-ZIPF_EXPONENT
    popularity[is_new] *= NEW_RELEASE_BOOST
    duration = np.clip(rng.normal(6300.0, 1200.0, size=films), 4800.0, 10800.0).round()

    titles = [
        f"{_ADJECTIVES[a]} {_NOUNS[b]}"
        for a, b in zip(rng.integers(0, len(_ADJECTIVES), films), rng.integers(0, len(_NOUNS), films))
    ]
    return Catalog(
        film_ids=np.arange(1, films + 1, dtype=np.int64),
        titles=titles,
        genre_weights=genre_weights,
        release_ts=release_ts,
        duration_s=duration,
        popularity=popularity / popularity.sum(),
    )
