"""Loading training data from a real ClickHouse (app/recsys/data/load.py)."""
from __future__ import annotations

from datetime import datetime, timezone

import numpy as np

from app.recsys.data.load import load_films, load_interactions, newest_event_ts
from app.schema import EVENT_TYPES
from app.settings import Settings
from app.storage.clickhouse import client

COLUMNS = "event_id, user_id, film_id, event_type, ts, watch_seconds, duration_seconds, rating"
DAY = 86_400
T0 = 1_790_000_000


def _insert(settings: Settings, rows: list[tuple]) -> None:
    conn = client(settings)
    try:
        conn.execute(
            f"INSERT INTO {settings.clickhouse_database}.interactions ({COLUMNS}) VALUES",
            [(*r[:4], datetime.fromtimestamp(r[4], timezone.utc).replace(tzinfo=None), *r[5:]) for r in rows],
        )
    finally:
        conn.disconnect()


def test_load_is_columnar_deduplicated_and_codes_event_types(clickhouse_settings: Settings) -> None:
    rows = [
        ("e1", 1, 10, "complete", T0, 5000.0, 5400.0, 0.0),
        ("e2", 1, 11, "rate", T0 + 60, 0.0, 0.0, 8.0),
        ("e3", 2, 10, "click", T0 + 120, 0.0, 0.0, 0.0),
        ("e4", 2, 0, "page_view", T0 + 180, 0.0, 0.0, 0.0),  # no film: not training data
    ]
    _insert(clickhouse_settings, rows)
    _insert(clickhouse_settings, rows[:2])  # a re-delivered Kafka batch
    seen: list[tuple[int, int | None]] = []
    loaded = load_interactions(clickhouse_settings, progress=lambda stage, done, total: seen.append((done, total)))

    order = np.argsort(loaded.ts)
    assert len(loaded) == 3
    assert loaded.user_id[order].tolist() == [1, 1, 2]
    assert loaded.film_id[order].tolist() == [10, 11, 10]
    assert [EVENT_TYPES[c] for c in loaded.event_type[order]] == ["complete", "rate", "click"]
    assert loaded.ts[order].tolist() == [T0, T0 + 60, T0 + 120]
    assert loaded.watch_seconds[order][0] == 5000.0 and loaded.rating[order][1] == 8.0
    assert loaded.user_id.dtype == np.int64 and loaded.event_type.dtype == np.int8
    assert seen[-1] == (3, 3)


def test_distinct_events_sharing_user_and_time_both_load(clickhouse_settings: Settings) -> None:
    """Deduplication is by the table's key (user, ts, event_id), like FINAL: only the event id tells these apart."""
    rows = [("a", 1, 10, "play", T0, 0.0, 0.0, 0.0), ("b", 1, 11, "play", T0, 0.0, 0.0, 0.0)]
    _insert(clickhouse_settings, rows)
    _insert(clickhouse_settings, rows)
    _insert(clickhouse_settings, rows[1:])
    assert sorted(load_interactions(clickhouse_settings).film_id.tolist()) == [10, 11]


def test_load_window_is_half_open(clickhouse_settings: Settings) -> None:
    _insert(clickhouse_settings, [(f"w{d}", 1, 10 + d, "play", T0 + d * DAY, 0.0, 0.0, 0.0) for d in range(5)])
    loaded = load_interactions(clickhouse_settings, since=T0 + DAY, until=T0 + 3 * DAY)
    assert sorted(loaded.film_id.tolist()) == [11, 12]


def test_empty_window_loads_empty_columns(clickhouse_settings: Settings) -> None:
    loaded = load_interactions(clickhouse_settings)
    assert len(loaded) == 0 and loaded.ts.dtype == np.float64
    assert newest_event_ts(clickhouse_settings) is None


def test_newest_event_time_counts_every_event(clickhouse_settings: Settings) -> None:
    _insert(clickhouse_settings, [("n1", 1, 10, "play", T0, 0.0, 0.0, 0.0), ("n2", 2, 0, "page_view", T0 + DAY, 0.0, 0.0, 0.0)])
    assert newest_event_ts(clickhouse_settings) == T0 + DAY


def test_films_load_the_latest_title_and_genres(clickhouse_settings: Settings) -> None:
    conn = client(clickhouse_settings)
    try:
        conn.execute(
            f"INSERT INTO {clickhouse_settings.clickhouse_database}.films (film_id, title, genres, updated_at) VALUES",
            [(7, "Old title", ["Drama"], datetime(2026, 1, 1)), (7, "New title", ["Comedy", "Drama"], datetime(2026, 2, 1)),
             (3, "Other", [], datetime(2026, 1, 1))],
        )
    finally:
        conn.disconnect()
    films = load_films(clickhouse_settings)
    assert films.as_mapping() == {3: "Other", 7: "New title"}
    assert films.genres == [[], ["Comedy", "Drama"]]
