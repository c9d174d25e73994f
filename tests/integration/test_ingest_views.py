"""Analyst views film_daily / user_daily: exact figures even when batches were re-delivered."""
from __future__ import annotations

import pytest

from app.events import Event
from app.storage.clickhouse import client
from app.storage.interactions import insert_events

pytestmark = pytest.mark.integration

DAY1 = 1_700_006_400.0  # 2023-11-15 00:00 UTC
DAY2 = DAY1 + 86_400

EVENTS = [
    Event("a", 1, 10, "play", DAY1 + 10, session_id="s1"),
    Event("b", 1, 10, "complete", DAY1 + 20, session_id="s1", watch_seconds=100),
    Event("c", 2, 10, "play", DAY1 + 30, session_id="s2"),
    Event("d", 2, 10, "play", DAY1 + 40, session_id="s2"),
    Event("e", 2, 10, "rate", DAY1 + 50, session_id="s3", rating=8),
    Event("f", 2, 11, "rate", DAY1 + 60, session_id="s3", rating=4),
    Event("g", 2, 0, "page_view", DAY1 + 70, session_id="s3"),
    Event("h", 1, 10, "play", DAY2 + 10, session_id="s4"),
]


def test_daily_views_count_each_event_once(clickhouse_settings) -> None:
    conn = client(clickhouse_settings)
    try:
        insert_events(conn, EVENTS)
        insert_events(conn, EVENTS[:5])  # re-delivered batch
        film = conn.execute("SELECT toString(day), film_id, events, plays, viewers, completes, ratings, rating_sum "
                            "FROM film_daily ORDER BY day, film_id")
        user = conn.execute("SELECT toString(day), user_id, events, sessions, plays, films_played, completes, ratings "
                            "FROM user_daily ORDER BY day, user_id")
    finally:
        conn.disconnect()
    assert film == [
        ("2023-11-15", 10, 5, 3, 2, 1, 1, 8.0),
        ("2023-11-15", 11, 1, 0, 0, 0, 1, 4.0),
        ("2023-11-16", 10, 1, 1, 1, 0, 0, 0.0),
    ]
    assert user == [
        ("2023-11-15", 1, 2, 1, 1, 1, 1, 0),
        ("2023-11-15", 2, 5, 2, 2, 1, 0, 2),
        ("2023-11-16", 1, 1, 1, 1, 1, 0, 0),
    ]
