"""Columnar insert: in-batch dedup, ts as epoch seconds, re-delivery invisible under FINAL."""
from __future__ import annotations

import pytest

from app.event_columns import EventColumns
from app.events import Event
from app.storage.clickhouse import client
from app.storage.interactions import dedup, insert_events, to_columns
from app.schema import INTERACTION_COLUMNS

E1 = Event("e1", 1, 10, "play", 1_700_000_000.9, session_id="s")
E2 = Event("e2", 2, 11, "rate", 1_700_000_100.0, rating=7.0, position=3)


def test_dedup_keeps_first_copy_and_order() -> None:
    assert dedup([E1, E2, E1._replace(user_id=99)]) == [E1, E2]


def test_columns_are_in_schema_order_with_integer_seconds() -> None:
    columns = to_columns(EventColumns.from_events([E1, E2]))
    assert len(columns) == len(INTERACTION_COLUMNS)
    assert columns[INTERACTION_COLUMNS.index("event_id")] == ["e1", "e2"]
    assert columns[INTERACTION_COLUMNS.index("event_type")] == ["play", "rate"]
    assert columns[INTERACTION_COLUMNS.index("ts")] == [1_700_000_000, 1_700_000_100]
    assert columns[INTERACTION_COLUMNS.index("rating")] == [0.0, 7.0]
    assert all(type(v) is int for v in columns[INTERACTION_COLUMNS.index("user_id")])  # plain values


@pytest.mark.integration
def test_redelivered_batch_is_invisible_to_final_readers(clickhouse_settings) -> None:
    conn = client(clickhouse_settings)
    try:
        assert insert_events(conn, [E1, E2, E1]) == 2
        assert insert_events(conn, [E2, E1]) == 2  # the same batch again, as after a crash
        assert insert_events(conn, []) == 0
        rows = conn.execute("SELECT event_id, user_id, toUnixTimestamp(ts), rating, position "
                            "FROM interactions FINAL ORDER BY event_id")
        raw_count = conn.execute("SELECT count() FROM interactions")[0][0]
    finally:
        conn.disconnect()
    assert rows == [("e1", 1, 1_700_000_000, 0.0, -1), ("e2", 2, 1_700_000_100, 7.0, 3)]
    assert raw_count in (2, 4)  # copies may or may not be merged yet; readers never see them
