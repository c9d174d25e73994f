"""`app.simulate.run` against the real ClickHouse and Kafka: catalog stored once, every message produced."""
from __future__ import annotations

import pytest

from app.events import InvalidEvent, parse_event
from app.settings import Settings
from app.simulate import run
from app.storage.clickhouse import client
from tests.integration.ingest_support import read_topic
from tests.integration.simulate_support import pipeline_settings  # noqa: F401  (fixture)

pytestmark = pytest.mark.integration

END = 1_750_000_000.0


async def test_run_writes_films_idempotently_and_produces_all_messages(pipeline_settings: Settings) -> None:
    first = await run(pipeline_settings, users=50, films=40, events=2_000, seed=3, days=5, bad_fraction=0.1,
                      end_ts=END, progress=False)
    assert (first.films_written, first.messages_sent, first.bad_messages) == (40, 2_000, 200)
    await run(pipeline_settings, users=50, films=40, events=10, seed=3, days=5, end_ts=END, progress=False)

    conn = client(pipeline_settings)
    try:
        assert conn.execute("SELECT count(), uniqExact(film_id), min(film_id), max(film_id) FROM films FINAL") == [
            (40, 40, 1, 40)
        ]
        ((with_genres,),) = conn.execute("SELECT countIf(length(genres) > 0) FROM films FINAL")
        assert with_genres == 40
    finally:
        conn.disconnect()

    records = await read_topic(pipeline_settings, pipeline_settings.topic_interactions, 2_010)
    assert len(records) == 2_010
    rejected = 0
    for record in records:
        try:
            event = parse_event(record.value, now=END)
        except InvalidEvent:
            rejected += 1
        else:
            assert record.key == str(event.user_id).encode()
    assert rejected == 200


async def test_bad_arguments_fail_before_anything_is_written(pipeline_settings: Settings) -> None:
    with pytest.raises(ValueError, match="bad fraction"):
        await run(pipeline_settings, users=5, films=5, events=10, bad_fraction=2.0, end_ts=END, progress=False)
    conn = client(pipeline_settings)
    try:
        assert conn.execute("SELECT count() FROM films") == [(0,)]
    finally:
        conn.disconnect()
