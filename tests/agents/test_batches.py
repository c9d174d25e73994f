"""Stats batch messages: codec round trip with source positions, bad input, chunking, placement."""
from __future__ import annotations

import msgpack
import pytest
from aiokafka.partitioner import DefaultPartitioner

from app.events import Event
from agents import batches
from agents.batches import StatsBatch

EVENTS = [
    Event("a", 7, 3, "play", 1_700_000_000.0, "s1", 0.0, 5400.0),
    Event("b", 7, 3, "progress", 1_700_000_060.5, "s1", 60.0, 5400.0),
    Event("c", 8, 0, "page_view", 1_700_000_061.0),
    Event("d", 8, 4, "rate", 1_700_000_062.0, rating=7.5),
    Event("e", 9, 4, "complete", 1_700_000_063.0, watch_seconds=99.0, duration_seconds=100.0),
]


def _stat_fields(event: Event) -> Event:
    """What survives the trip: everything but the id, the text fields and the duration."""
    return event._replace(event_id="", session_id="", source="", model_version="", position=-1, duration_seconds=0.0)


def test_round_trip_keeps_the_stats_columns_and_source_positions() -> None:
    batch = StatsBatch.of_partition(2, EVENTS, [10, 11, 15, 16, 2**40])
    decoded = batches.decode(batches.encode(batch))
    assert decoded.events() == [_stat_fields(e) for e in EVENTS]
    assert (decoded.partition.tolist(), decoded.offset.tolist()) == ([2] * 5, [10, 11, 15, 16, 2**40])
    assert len(batches.decode(batches.encode(StatsBatch.empty()))) == 0


def _columns(*changes: tuple[int, bytes]) -> bytes:
    one = StatsBatch.of_partition(0, EVENTS[:1], [5])
    parts = [batches.FORMAT, *(getattr(one, name).tobytes() for name in batches.STAT_COLUMNS)]
    for index, part in changes:
        parts[index + 1] = part
    return msgpack.packb(parts)


@pytest.mark.parametrize("raw, message", [
    (b"\xc1", "not msgpack"),
    (msgpack.packb([[1], [2]]), "expected format 2"),
    (msgpack.packb([1, *([b""] * 8)]), "expected format 2"),  # the former msgpack-list format
    (_columns((0, b"\x01" * 16)), "different lengths"),
    (_columns((0, b"\x01" * 7)), "bad column"),
    (_columns((2, b"\x63")), "bad value"),
    (_columns((7, b"\xff" * 8)), "bad value"),
    (_columns((3, "text")), "columns must be bytes"),
])
def test_bad_messages_raise_a_clear_error(raw: bytes, message: str) -> None:
    with pytest.raises(batches.InvalidBatch, match=message):
        batches.decode(raw)


def test_chunks_keep_order_and_cap_the_size() -> None:
    batch = StatsBatch.of_partition(1, EVENTS, range(5))
    pieces = list(batch.chunks(2))
    assert [p.offset.tolist() for p in pieces] == [[0, 1], [2, 3], [4]]
    assert [e for p in pieces for e in p.events()] == [_stat_fields(e) for e in EVENTS]


def test_a_full_loader_batch_of_one_partition_fits_a_kafka_message() -> None:
    many = StatsBatch.of_partition(0, [EVENTS[0]._replace(user_id=2**40, film_id=2**30)] * 20_000,
                                   range(2**40, 2**40 + 20_000))
    users, films = batches.stats_messages({0: many}, partitions=1)
    assert len(users) == len(films) == 3  # 20,000 / MAX_EVENTS_PER_MESSAGE
    assert max(len(value) for _, value in users + films) < 512 * 1024


def test_film_partition_is_kafkas_default_partitioner_on_the_film_key() -> None:
    every = list(range(8))
    for film_id in (1, 4, 123, 2**40):
        assert batches.film_partition(film_id, 8) == DefaultPartitioner()(str(film_id).encode(), every, every)


def test_stats_messages_one_per_source_partition_and_one_per_film_partition() -> None:
    by_partition = {2: StatsBatch.of_partition(2, EVENTS[:2], [5, 6]),
                    0: StatsBatch.of_partition(0, EVENTS[2:], [7, 8, 9]), 3: StatsBatch.empty()}
    users, films = batches.stats_messages(by_partition, partitions=8)
    assert [p for p, _ in users] == [0, 2]
    assert batches.decode(dict(users)[2]).events() == [_stat_fields(e) for e in EVENTS[:2]]
    # film actions only (play, complete, rate), each on its film's partition, with its source position
    placed = {q: [((e.user_id, e.event_type), p, o) for e, p, o in batches.decode(raw).rows()] for q, raw in films}
    expected: dict[int, list] = {}
    for e, p, o in ((EVENTS[3], 0, 8), (EVENTS[4], 0, 9), (EVENTS[0], 2, 5)):  # partition 0's events come first
        expected.setdefault(batches.film_partition(e.film_id, 8), []).append(((e.user_id, e.event_type), p, o))
    assert placed == expected
