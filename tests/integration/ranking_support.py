"""A world where taste drifts, written into ClickHouse with `insert_events`: the two-level tests' data.

Each user watches films of one taste group for the first 60% of their plays and of another
afterwards. ALS, fitted on the whole history, splits its list between both; films similar to
the last plays (a first-level source of the two-level model) and a ranker taught on a later
label slice follow the drift: the two-level model must win here, by a wide margin.
"""
from __future__ import annotations

import numpy as np

from app.events import Event, new_event_id
from app.recsys.data.dataset import DAY_S
from app.settings import Settings
from app.storage.clickhouse import client
from app.storage.interactions import insert_events

GROUPS = 8
END_TS = 1_795_000_000


def drift_events(users: int = 600, films: int = 240, plays: int = 30, days: int = 60, seed: int = 0) -> list[Event]:
    rng = np.random.default_rng(seed)
    per_group = films // GROUPS
    within = 1.0 / np.arange(1, per_group + 1) ** 0.8
    within /= within.sum()
    out = []
    for user in range(1, users + 1):
        ts = np.sort(rng.uniform(END_TS - days * DAY_S, END_TS, plays)).astype(int)
        switch = int(plays * 0.6)
        old, new = user % GROUPS, (user + GROUPS // 2) % GROUPS
        chosen = [rng.choice(per_group, switch, replace=False, p=within) * GROUPS + old + 1,
                  rng.choice(per_group, plays - switch, replace=False, p=within) * GROUPS + new + 1]
        for t, film in zip(ts, np.concatenate(chosen)):
            out.append(Event(new_event_id(), user, int(film), "play", float(t), session_id=f"s{user}",
                             duration_seconds=5400.0))
    return out


def seed_drift(settings: Settings, **kwargs: int) -> list[Event]:
    """The drift world and its catalog (genre "g<group>") in the settings' database; returns the events."""
    events = drift_events(**kwargs)
    films = sorted({e.film_id for e in events})
    conn = client(settings)
    try:
        insert_events(conn, events)
        conn.execute("INSERT INTO films (film_id, title, genres, release_date, duration_seconds) VALUES",
                     [{"film_id": f, "title": f"Film {f}", "genres": [f"g{(f - 1) % GROUPS}"],
                       "release_date": __import__("datetime").date(2020, 1, 1), "duration_seconds": 5400.0}
                      for f in films])
    finally:
        conn.disconnect()
    return events
