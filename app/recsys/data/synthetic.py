"""Planted-taste interactions generated inside ClickHouse (tests and bench/train.py).

Users and films fall into `groups` taste groups (id % groups); a user picks a
film of their own group with probability `in_group`, otherwise any film, and
within a group low film ids are more popular (squared uniform). A model that
learns taste therefore beats the Popular baseline, which is what the retrain
gate checks. Rows are produced by one `INSERT ... SELECT FROM numbers(n)` on the
server: millions of events in seconds, no Python row objects.
"""
from __future__ import annotations

from dataclasses import dataclass

from clickhouse_driver import Client

from app.settings import Settings
from app.storage.clickhouse import client

DAY_S = 86_400


@dataclass(frozen=True)
class PlantedTaste:
    users: int = 1_000
    films: int = 500
    events: int = 50_000
    groups: int = 10
    in_group: float = 0.8
    days: int = 60
    end_ts: int = 1_795_000_000  # 2026-11-18: fixed, so runs are comparable
    seed: int = 0  # the draws are hashes of (seed, row, draw): the same spec gives the same events

    def __post_init__(self) -> None:
        if min(self.users, self.films, self.events, self.groups, self.days) < 1:
            raise ValueError("users, films, events, groups and days must be >= 1")
        if self.films < self.groups:
            raise ValueError("need at least one film per taste group")
        if not 0 <= self.in_group <= 1:
            raise ValueError("in_group is a probability")


def insert_planted_taste(conn: Client, database: str, spec: PlantedTaste) -> int:
    """Append `spec.events` events to `database.interactions`; returns the row count inserted.

    Each call draws new event ids: calling twice doubles the data (it is test data, not a replay).
    Everything else is a hash of (seed, row number, draw), not `rand()`: a test on this data judges
    the same events every run, so a model comparison cannot pass or fail by the draw.
    """
    per_group = spec.films // spec.groups
    conn.execute(
        f"""
        INSERT INTO {database}.interactions
            (event_id, user_id, film_id, event_type, ts, session_id, watch_seconds, duration_seconds,
             rating, source, model_version, position)
        SELECT
            toString(generateUUIDv4()),
            uid,
            if(modulo(cityHash64(%(seed)s, n, 2), 1000) < %(in_group)s,
               1 + toUInt64(floor(pow(modulo(cityHash64(%(seed)s, n, 3), 4294967296) / 4294967296.0, 2)
                                  * %(per_group)s)) * %(groups)s
                 + modulo(uid, %(groups)s),
               1 + modulo(cityHash64(%(seed)s, n, 4), %(films)s)),
            etype,
            toDateTime(%(end)s - modulo(cityHash64(%(seed)s, n, 6), %(span)s)),
            concat('s', toString(uid)),
            if(etype = 'complete', 5400.0, if(etype = 'progress', 1800.0, 0.0)),
            5400.0,
            if(etype = 'rate', toFloat32(6 + modulo(cityHash64(%(seed)s, n, 7), 5)), 0.0),
            '',
            '',
            -1
        FROM (
            SELECT
                number AS n,
                1 + modulo(cityHash64(%(seed)s, n, 1), %(users)s) AS uid,
                %(types)s[1 + modulo(cityHash64(%(seed)s, n, 5), 6)] AS etype
            FROM numbers(%(events)s)
        )
        """,
        {
            "seed": spec.seed,
            "users": spec.users,
            "films": spec.films,
            "groups": spec.groups,
            "per_group": per_group,
            "in_group": int(spec.in_group * 1000),
            "end": spec.end_ts,
            "span": spec.days * DAY_S,
            "events": spec.events,
            "types": ["click", "play", "progress", "complete", "rate", "watchlist_add"],
        },
    )
    return spec.events


def insert_films(conn: Client, database: str, films: int) -> None:
    """Catalog rows `Film <id>` for ids 1..films (titles are published with the model)."""
    conn.execute(
        f"""
        INSERT INTO {database}.films (film_id, title, genres, release_date, duration_seconds)
        SELECT number + 1, concat('Film ', toString(number + 1)), [], toDate('2020-01-01'), 5400.0
        FROM numbers(%(films)s)
        """,
        {"films": films},
    )


def seed(settings: Settings, spec: PlantedTaste) -> None:
    """Planted-taste events plus their film catalog into the settings' database."""
    conn = client(settings)
    try:
        insert_planted_taste(conn, settings.clickhouse_database, spec)
        insert_films(conn, settings.clickhouse_database, spec.films)
    finally:
        conn.disconnect()
