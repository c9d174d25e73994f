"""Import of a MovieLens dataset (`movies.csv` + `ratings.csv`) into the platform.

Films go to ClickHouse `films` directly (title without the "(year)" suffix,
genres split on `|`, "(no genres listed)" = none, release_date = 1 January of
the title's year, or 1970-01-01 when there is no year or it is earlier:
ClickHouse `Date` starts there). MovieLens has no running times, so every film
gets ASSUMED_DURATION_S.

Ratings go through Kafka like site traffic (the loader validates and stores
them). Mapping of one rating (user u, movie m, stars s in 0.5..5, time t):

    play      at t                                   a rating implies the film was watched
    complete  at t, watch = duration = ASSUMED_DURATION_S
    rate      at t, rating = 2 * s  (1..10, the platform's scale)

all with session_id "movielens-{u}-{day of t}". Event ids are uuid5 of
(u, m, type) in a fixed namespace, so a re-import sends the same events and the
store deduplicates them. Timestamps are kept as they are (the trainer's window
is relative to the newest event, not to the wall clock); ratings dated before
1990-01-01 (none in MovieLens), which the event validator refuses as unit mistakes, are skipped
and counted. Events are sent in time order, like a replay of the site.
"""
from __future__ import annotations

import asyncio
import csv
import logging
import re
import uuid
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Iterator, NamedTuple, Sequence

from app.events import MIN_TS_S, Event
from app.producer import produce_messages, to_message
from app.settings import Settings
from app.storage.films import FilmRow, write_films
from app.storage.kafka_admin import ensure_topics

log = logging.getLogger(__name__)

DEFAULT_DIR = Path("/work/shared/data/ml-latest-small")
ASSUMED_DURATION_S = 6_000.0
STARS_TO_RATING = 2.0
NAMESPACE = uuid.UUID("6f1c2a8e-3b5d-4c7e-9a1f-0d2e4b6c8a10")
EVENTS_PER_RATING = ("play", "complete", "rate")
NO_GENRES = "(no genres listed)"
_TITLE_YEAR = re.compile(r"^(?P<name>.*?)\s*\((?P<year>\d{4})(?:[-–]\d{0,4})?\)\s*$")
_EPOCH = date(1970, 1, 1)


class MovieLensError(ValueError):
    """A MovieLens file is missing or has a line we cannot read."""


class Rating(NamedTuple):
    user_id: int
    movie_id: int
    stars: float
    ts: int


def parse_title(title: str) -> tuple[str, date]:
    """("Toy Story", 1995-01-01) from "Toy Story (1995)"; undated titles get 1970-01-01."""
    match = _TITLE_YEAR.match(title.strip())
    if not match:
        return title.strip(), _EPOCH
    return match["name"], max(date(int(match["year"]), 1, 1), _EPOCH)


def _open(path: Path, header: list[str]) -> Iterator[tuple[int, list[str]]]:
    if not path.is_file():
        raise MovieLensError(f"{path} not found (a MovieLens directory has movies.csv and ratings.csv)")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        first = next(reader, None)
        if first != header:
            raise MovieLensError(f"{path}: expected header {','.join(header)}, got {first}")
        for line, row in enumerate(reader, start=2):
            if len(row) != len(header):
                raise MovieLensError(f"{path}:{line}: expected {len(header)} fields, got {len(row)}")
            yield line, row


def _positive_int(path: Path, line: int, name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise MovieLensError(f"{path}:{line}: {name} must be a positive integer, got {raw!r}")
    return value


def read_movies(path: Path) -> list[FilmRow]:
    """Catalog rows (app.schema.FILM_COLUMNS order) from movies.csv."""
    rows = []
    for line, (movie_id, title, genres) in _open(path, ["movieId", "title", "genres"]):
        name, released = parse_title(title)
        genre_list = [] if genres == NO_GENRES else [g for g in genres.split("|") if g]
        rows.append((_positive_int(path, line, "movieId", movie_id), name, genre_list, released, ASSUMED_DURATION_S))
    return rows


def read_ratings(path: Path) -> list[Rating]:
    """Ratings from ratings.csv, checked: positive ids, 0.5..5 stars in half steps, integer time."""
    out = []
    for line, (user_id, movie_id, stars, ts) in _open(path, ["userId", "movieId", "rating", "timestamp"]):
        try:
            value = float(stars)
        except ValueError:
            value = -1.0
        if not (0.5 <= value <= 5.0 and (value * 2).is_integer()):
            raise MovieLensError(f"{path}:{line}: rating must be 0.5..5 stars in half steps, got {stars!r}")
        out.append(Rating(
            _positive_int(path, line, "userId", user_id),
            _positive_int(path, line, "movieId", movie_id),
            value,
            _positive_int(path, line, "timestamp", ts),
        ))
    return out


def event_id(user_id: int, movie_id: int, event_type: str) -> str:
    """Deterministic id of one of a rating's events: re-imports are idempotent."""
    return str(uuid.uuid5(NAMESPACE, f"movielens:{user_id}:{movie_id}:{event_type}"))


def rating_events(rating: Rating) -> list[Event]:
    """The play, complete and rate events of one rating (mapping in the module docstring)."""
    user, movie, ts = rating.user_id, rating.movie_id, float(rating.ts)
    session = f"movielens-{user}-{rating.ts // 86_400}"
    return [
        Event(event_id(user, movie, "play"), user, movie, "play", ts, session, duration_seconds=ASSUMED_DURATION_S),
        Event(event_id(user, movie, "complete"), user, movie, "complete", ts, session,
              watch_seconds=ASSUMED_DURATION_S, duration_seconds=ASSUMED_DURATION_S),
        Event(event_id(user, movie, "rate"), user, movie, "rate", ts, session, rating=rating.stars * STARS_TO_RATING),
    ]


def importable(ratings: Sequence[Rating]) -> tuple[list[Rating], int]:
    """Ratings the validator accepts, in time order, and how many were skipped (before 1990)."""
    kept = sorted((r for r in ratings if r.ts >= MIN_TS_S), key=lambda r: (r.ts, r.user_id, r.movie_id))
    return kept, len(ratings) - len(kept)


@dataclass(frozen=True)
class ImportSummary:
    films: int
    ratings: int
    skipped_too_old: int
    messages: int


async def import_dir(settings: Settings, directory: Path = DEFAULT_DIR, progress: bool = True) -> ImportSummary:
    """Write the catalog to ClickHouse and send every importable rating's events to Kafka."""
    directory = Path(directory)
    movies = read_movies(directory / "movies.csv")
    ratings = read_ratings(directory / "ratings.csv")
    kept, skipped = importable(ratings)
    if skipped:
        log.info("skipping %d ratings dated before 1990-01-01 (the event validator refuses them)", skipped)
    n_films = await asyncio.to_thread(write_films, settings, movies)
    log.info("wrote %d films to ClickHouse %s.films", n_films, settings.clickhouse_database)
    await ensure_topics(settings)
    messages = (to_message(event) for rating in kept for event in rating_events(rating))
    sent = await produce_messages(settings, messages, len(kept) * len(EVENTS_PER_RATING), progress=progress, desc="movielens")
    return ImportSummary(n_films, len(kept), skipped, sent)
