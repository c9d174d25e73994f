"""`app.movielens.import_dir` against the real ClickHouse and Kafka, twice: same films, same event ids."""
from __future__ import annotations

from pathlib import Path

import pytest

from app.events import parse_event
from app.movielens import import_dir
from app.settings import Settings
from app.storage.clickhouse import client
from tests.app.test_movielens import MOVIES, RATINGS
from tests.integration.ingest_support import read_topic
from tests.integration.simulate_support import pipeline_settings  # noqa: F401  (fixture)

pytestmark = pytest.mark.integration


async def test_import_twice_is_idempotent(pipeline_settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "movies.csv").write_text(MOVIES, encoding="utf-8")
    (tmp_path / "ratings.csv").write_text(RATINGS, encoding="utf-8")
    first = await import_dir(pipeline_settings, tmp_path, progress=False)
    second = await import_dir(pipeline_settings, tmp_path, progress=False)
    assert first == second
    assert (first.films, first.ratings, first.skipped_too_old, first.messages) == (4, 3, 1, 9)

    conn = client(pipeline_settings)
    try:
        rows = conn.execute("SELECT film_id, title, genres FROM films FINAL ORDER BY film_id")
    finally:
        conn.disconnect()
    assert [r[0] for r in rows] == [1, 2, 3, 4]
    assert rows[1][1:] == ("Misérables, Les", ["Drama", "War"])

    records = await read_topic(pipeline_settings, pipeline_settings.topic_interactions, 18)
    events = [parse_event(r.value) for r in records]
    assert len(events) == 18
    ids = [e.event_id for e in events]
    assert len(set(ids)) == 9  # the second import re-sent the same 9 events
    assert {e.event_type for e in events} == {"play", "complete", "rate"}
