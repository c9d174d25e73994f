"""Stats batch messages: codec round trip, bad input, placement of film actions."""
from __future__ import annotations

import msgpack
import pytest
from aiokafka.partitioner import DefaultPartitioner

from app.events import Event
from agents import batches

EVENTS = [
    Event("a", 7, 3, "play", 1_700_000_000.0, "s1", 0.0, 5400.0),
    Event("b", 7, 3, "progress", 1_700_000_060.5, "s1", 60.0, 5400.0),
    Event("c", 8, 0, "page_view", 1_700_000_061.0),
    Event("d", 8, 4, "rate", 1_700_000_062.0, rating=7.5),
    Event("e", 9, 4, "complete", 1_700_000_063.0, watch_seconds=99.0, duration_seconds=100.0),
]


def _stat_fields(event: Event) -> Event:
    """What survives the trip: everything but the id and the text fields."""
    return event._replace(event_id="", session_id="", source="", model_version="", position=-1)


def test_round_trip_keeps_the_stats_columns() -> None:
    assert batches.decode(batches.encode(EVENTS)) == [_stat_fields(e) for e in EVENTS]
    assert batches.decode(batches.encode([])) == []


@pytest.mark.parametrize("raw, message", [
    (b"\xc1", "not msgpack"),
    (msgpack.packb([[1], [2]]), "expected 7 columns"),
    (msgpack.packb([[1, 2], [1], [3], [1.0], [0.0], [0.0], [0.0]]), "different lengths"),
    (msgpack.packb([[1], [1], [99], [1.0], [0.0], [0.0], [0.0]]), "bad value"),
])
def test_bad_messages_raise_a_clear_error(raw: bytes, message: str) -> None:
    with pytest.raises(batches.InvalidBatch, match=message):
        batches.decode(raw)


def test_film_partition_is_kafkas_default_partitioner_on_the_film_key() -> None:
    every = list(range(8))
    for film_id in (1, 4, 123, 2**40):
        assert batches.film_partition(film_id, 8) == DefaultPartitioner()(str(film_id).encode(), every, every)


def test_stats_messages_one_per_source_partition_and_one_per_film_partition() -> None:
    users, films = batches.stats_messages({2: EVENTS[:2], 0: EVENTS[2:], 3: []}, partitions=8)
    assert [p for p, _ in users] == [0, 2]
    assert batches.decode(dict(users)[2]) == [_stat_fields(e) for e in EVENTS[:2]]
    # film actions only (play, complete, rate), each on its film's partition
    by_partition = {q: [e.event_id or (e.user_id, e.event_type) for e in batches.decode(raw)] for q, raw in films}
    expected: dict[int, list] = {}
    for e in (EVENTS[3], EVENTS[4], EVENTS[0]):  # partition 0's events come first, then 2's
        expected.setdefault(batches.film_partition(e.film_id, 8), []).append((e.user_id, e.event_type))
    assert by_partition == expected
