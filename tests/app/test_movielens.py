"""MovieLens mapping on a tiny dataset written here: films, events per rating, idempotent ids."""
from __future__ import annotations

import uuid
from datetime import date
from pathlib import Path

import pytest

from app.events import parse_event
from app.movielens import (
    ASSUMED_DURATION_S,
    EVENTS_PER_RATING,
    MovieLensError,
    Rating,
    importable,
    parse_title,
    rating_events,
    read_movies,
    read_ratings,
)

MOVIES = """movieId,title,genres
1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy
2,"Misérables, Les (1995)",Drama|War
3,Babylon 5,Sci-Fi
4,Metropolis (1927),(no genres listed)
"""
RATINGS = """userId,movieId,rating,timestamp
1,1,4.0,964982703
1,2,0.5,1100000000
2,1,5.0,1500000000
2,4,3.5,600000000
"""


@pytest.fixture
def movielens(tmp_path: Path) -> Path:
    (tmp_path / "movies.csv").write_text(MOVIES, encoding="utf-8")
    (tmp_path / "ratings.csv").write_text(RATINGS, encoding="utf-8")
    return tmp_path


def test_movies_become_catalog_rows(movielens: Path) -> None:
    rows = {row[0]: row for row in read_movies(movielens / "movies.csv")}
    assert rows[1] == (1, "Toy Story", ["Adventure", "Animation", "Children", "Comedy", "Fantasy"],
                       date(1995, 1, 1), ASSUMED_DURATION_S)
    assert rows[2][1:4] == ("Misérables, Les", ["Drama", "War"], date(1995, 1, 1))
    assert rows[3][1:4] == ("Babylon 5", ["Sci-Fi"], date(1970, 1, 1))
    assert rows[4][2:4] == ([], date(1970, 1, 1))  # no genres; before ClickHouse's first Date


@pytest.mark.parametrize(
    ("title", "expected"),
    [("Heat (1995)", ("Heat", date(1995, 1, 1))), ("Cosmos", ("Cosmos", date(1970, 1, 1))),
     ("Fawlty Towers (1975-1979)", ("Fawlty Towers", date(1975, 1, 1))), ("2001 (1968) ", ("2001", date(1970, 1, 1)))],
)
def test_parse_title(title: str, expected: tuple) -> None:
    assert parse_title(title) == expected


def test_each_rating_maps_to_play_complete_rate(movielens: Path) -> None:
    rating = read_ratings(movielens / "ratings.csv")[1]
    events = rating_events(rating)
    assert [e.event_type for e in events] == list(EVENTS_PER_RATING)
    assert {(e.user_id, e.film_id, e.ts) for e in events} == {(1, 2, 1_100_000_000.0)}
    play, complete, rate = events
    assert play.duration_seconds == complete.duration_seconds == complete.watch_seconds == ASSUMED_DURATION_S
    assert rate.rating == 1.0  # 0.5 stars -> 1 on the 1..10 scale
    assert len({e.session_id for e in events}) == 1
    for event in events:
        assert parse_event(event.to_bytes()) == event


def test_stars_map_to_the_ten_point_scale() -> None:
    ratings = [rating_events(Rating(1, 1, stars / 2, 1_500_000_000))[2].rating for stars in range(1, 11)]
    assert ratings == [float(r) for r in range(1, 11)]


def test_event_ids_are_deterministic_and_distinct(movielens: Path) -> None:
    first = [e.event_id for r in read_ratings(movielens / "ratings.csv") for e in rating_events(r)]
    again = [e.event_id for r in read_ratings(movielens / "ratings.csv") for e in rating_events(r)]
    assert first == again
    assert len(set(first)) == len(first)
    assert all(uuid.UUID(i).version == 5 for i in first)


def test_ratings_before_1990_are_skipped_and_the_rest_time_ordered(movielens: Path) -> None:
    kept, skipped = importable(read_ratings(movielens / "ratings.csv"))
    assert skipped == 1  # 600000000 is in 1989
    assert [r.ts for r in kept] == [964_982_703, 1_100_000_000, 1_500_000_000]


@pytest.mark.parametrize(
    ("ratings", "message"),
    [
        ("userId,movieId,rating,timestamp\n1,1,6.0,1500000000\n", r"ratings.csv:2: rating must be 0.5..5"),
        ("userId,movieId,rating,timestamp\n1,1,4.2,1500000000\n", r"half steps"),
        ("userId,movieId,rating,timestamp\n0,1,4.0,1500000000\n", r"userId must be a positive integer"),
        ("userId,movieId,rating,timestamp\n1,1,4.0\n", r"expected 4 fields, got 3"),
        ("user,movie,stars,time\n", r"expected header"),
    ],
)
def test_bad_ratings_file_names_the_line(tmp_path: Path, ratings: str, message: str) -> None:
    (tmp_path / "ratings.csv").write_text(ratings)
    with pytest.raises(MovieLensError, match=message):
        read_ratings(tmp_path / "ratings.csv")


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MovieLensError, match="movies.csv not found"):
        read_movies(tmp_path / "movies.csv")
