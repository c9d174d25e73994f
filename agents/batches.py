"""Stats batch messages: what the loader hands the stats agents, one message per partition.

Why batches: Faust's per-message machinery costs far more than the stats
arithmetic (docs/ingestion.md), so after storing a batch the loader sends, per
source partition p, ONE message with the columns the stats need to
`{APP_ID}-user-batches` partition p, and per film partition q one message with
the film actions to `{APP_ID}-film-batches` partition q. Each stats agent then
folds a whole batch inside one stream iteration, and table changelogs land on
p / q, where the keys they hold belong (same placement as the old per-event
topics, so recovery and standbys work unchanged).

Wire format: msgpack list of 7 equally long columns (STAT_COLUMNS), the event
type as its index in `app.schema.EVENT_TYPES`.
"""
from __future__ import annotations

import functools
from typing import Iterable, Mapping, Sequence

import msgpack
from aiokafka.partitioner import DefaultPartitioner

from app.events import Event
from app.schema import EVENT_TYPES

STAT_COLUMNS = ("user_id", "film_id", "event_type", "ts", "watch_seconds", "duration_seconds", "rating")
# Events the per-film stats use (views, completes, ratings).
FILM_ACTION_TYPES = frozenset({"play", "complete", "rate"})
_TYPE_CODE = {name: code for code, name in enumerate(EVENT_TYPES)}
_partitioner = DefaultPartitioner()


class InvalidBatch(ValueError):
    """A stats batch message that does not decode (never produced by this code)."""


def encode(events: Sequence[Event]) -> bytes:
    """The stats columns of `events` as one compact message."""
    rows = ((e.user_id, e.film_id, _TYPE_CODE[e.event_type], e.ts, e.watch_seconds, e.duration_seconds, e.rating)
            for e in events)
    return msgpack.packb([list(column) for column in zip(*rows)] or [[] for _ in STAT_COLUMNS])


def decode(raw: bytes) -> list[Event]:
    """Events (event_id and text fields empty: stats do not use them) from `encode` output."""
    try:
        columns = msgpack.unpackb(raw)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise InvalidBatch(f"not msgpack: {exc}") from None
    if not isinstance(columns, list) or len(columns) != len(STAT_COLUMNS):
        raise InvalidBatch(f"expected {len(STAT_COLUMNS)} columns {STAT_COLUMNS}")
    if len({len(column) for column in columns}) > 1:
        raise InvalidBatch("columns of different lengths")
    try:
        return [Event("", user, film, EVENT_TYPES[code], ts, "", watch, duration, rating)
                for user, film, code, ts, watch, duration, rating in zip(*columns)]
    except (IndexError, TypeError) as exc:
        raise InvalidBatch(f"bad value: {exc}") from None


@functools.lru_cache(maxsize=65_536)
def film_partition(film_id: int, partitions: int) -> int:
    """Partition of a film's key `str(film_id)` under Kafka's default (murmur2) partitioner.

    The same placement the film tables' changelog keys get, so a film's stats
    stay on one partition whoever produced them. Cached: murmur2 is pure Python.
    """
    every = list(range(partitions))
    return _partitioner(str(film_id).encode(), every, every)


def film_batches(events: Iterable[Event], partitions: int) -> dict[int, list[Event]]:
    """Film actions of `events` grouped by film partition (order kept within a partition)."""
    out: dict[int, list[Event]] = {}
    for event in events:
        if event.event_type in FILM_ACTION_TYPES:
            out.setdefault(film_partition(event.film_id, partitions), []).append(event)
    return out


def stats_messages(
    good_by_partition: Mapping[int, Sequence[Event]], partitions: int
) -> tuple[list[tuple[int, bytes]], list[tuple[int, bytes]]]:
    """(user-batch messages, film-batch messages) as (partition, value) for one loaded batch."""
    users = [(p, encode(events)) for p, events in sorted(good_by_partition.items()) if events]
    everything = (e for _, events in sorted(good_by_partition.items()) for e in events)
    films = [(q, encode(events)) for q, events in sorted(film_batches(everything, partitions).items())]
    return users, films
