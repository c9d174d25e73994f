"""Stats batch messages: what the loader hands the stats agents.

Why batches: Faust's per-message machinery costs far more than the stats
arithmetic (docs/ingestion.md), so after storing a batch the loader sends, per
source partition p, the columns the stats need to `{APP_ID}-user-batches`
partition p, and per film partition q the film actions to
`{APP_ID}-film-batches` partition q, at most MAX_EVENTS_PER_MESSAGE events
per message (a 20,000-event batch of one partition would pass Kafka's 1 MB
message limit). Each stats agent folds a whole message inside one stream
iteration, and table changelogs land on p / q, where the keys they hold
belong (same placement as per-event topics, so recovery and standbys work).

Every event carries its SOURCE position (partition and offset in
`interactions`): stable across re-deliveries, so the agents can tell an
event they already applied from a new one (agents/stats.py).

Wire format: msgpack list of 9 equally long columns (STAT_COLUMNS), the event
type as its index in `app.schema.EVENT_TYPES`.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Iterator, Mapping, Sequence

import msgpack
from aiokafka.partitioner import DefaultPartitioner

from app.events import Event
from app.schema import EVENT_TYPES

STAT_COLUMNS = ("user_id", "film_id", "event_type", "ts", "watch_seconds", "duration_seconds", "rating",
                "partition", "offset")
# ~60 bytes per event: a message stays near 250 KB, far below Kafka's 1 MB default.
MAX_EVENTS_PER_MESSAGE = 4096
# Events the per-film stats use (views, completes, ratings).
FILM_ACTION_TYPES = frozenset({"play", "complete", "rate"})
_TYPE_CODE = {name: code for code, name in enumerate(EVENT_TYPES)}
_partitioner = DefaultPartitioner()


class InvalidBatch(ValueError):
    """A stats batch message that does not decode (never produced by this code)."""


@dataclass(slots=True)
class StatsBatch:
    """Events (event_id and text fields empty: stats do not use them) with their source
    positions, as columns: `partitions[i]`, `offsets[i]` locate `events[i]` in `interactions`."""

    events: list[Event] = field(default_factory=list)
    partitions: list[int] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)

    @classmethod
    def of_partition(cls, partition: int, events: Sequence[Event], offsets: Sequence[int]) -> "StatsBatch":
        return cls(list(events), [partition] * len(events), list(offsets))

    def __len__(self) -> int:
        return len(self.events)

    def append(self, event: Event, partition: int, offset: int) -> None:
        self.events.append(event)
        self.partitions.append(partition)
        self.offsets.append(offset)

    def rows(self) -> Iterator[tuple[Event, int, int]]:
        return zip(self.events, self.partitions, self.offsets)

    def chunks(self, size: int = MAX_EVENTS_PER_MESSAGE) -> Iterator["StatsBatch"]:
        """Consecutive pieces of at most `size` events (order kept)."""
        for start in range(0, len(self.events), size):
            end = start + size
            yield StatsBatch(self.events[start:end], self.partitions[start:end], self.offsets[start:end])


def encode(batch: StatsBatch) -> bytes:
    """The stats columns of `batch` as one compact message."""
    rows = ((e.user_id, e.film_id, _TYPE_CODE[e.event_type], e.ts, e.watch_seconds, e.duration_seconds, e.rating,
             p, o) for e, p, o in batch.rows())
    return msgpack.packb([list(column) for column in zip(*rows)] or [[] for _ in STAT_COLUMNS])


def decode(raw: bytes) -> StatsBatch:
    """The batch `encode` made."""
    try:
        columns = msgpack.unpackb(raw)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise InvalidBatch(f"not msgpack: {exc}") from None
    if not isinstance(columns, list) or len(columns) != len(STAT_COLUMNS):
        raise InvalidBatch(f"expected {len(STAT_COLUMNS)} columns {STAT_COLUMNS}")
    if not all(isinstance(column, list) for column in columns) or len({len(column) for column in columns}) > 1:
        raise InvalidBatch("columns of different lengths")
    try:
        events = [Event("", user, film, EVENT_TYPES[code], ts, "", watch, duration, rating)
                  for user, film, code, ts, watch, duration, rating in zip(*columns[:7])]
    except (IndexError, TypeError) as exc:
        raise InvalidBatch(f"bad value: {exc}") from None
    partitions, offsets = columns[7], columns[8]
    if not all(type(v) is int for v in partitions) or not all(type(v) is int for v in offsets):
        raise InvalidBatch("bad value: source partitions and offsets must be integers")
    return StatsBatch(events, partitions, offsets)


@functools.lru_cache(maxsize=65_536)
def film_partition(film_id: int, partitions: int) -> int:
    """Partition of a film's key `str(film_id)` under Kafka's default (murmur2) partitioner.

    The same placement the film tables' changelog keys get, so a film's stats
    stay on one partition whoever produced them. Cached: murmur2 is pure Python.
    """
    every = list(range(partitions))
    return _partitioner(str(film_id).encode(), every, every)


def film_batches(batches: Sequence[StatsBatch], partitions: int) -> dict[int, StatsBatch]:
    """Film actions of `batches` grouped by film partition (order kept within a partition)."""
    out: dict[int, StatsBatch] = {}
    for batch in batches:
        for event, p, o in batch.rows():
            if event.event_type in FILM_ACTION_TYPES:
                q = film_partition(event.film_id, partitions)
                if q not in out:
                    out[q] = StatsBatch()
                out[q].append(event, p, o)
    return out


def stats_messages(
    good_by_partition: Mapping[int, StatsBatch], partitions: int
) -> tuple[list[tuple[int, bytes]], list[tuple[int, bytes]]]:
    """(user-batch messages, film-batch messages) as (partition, value) for one loaded batch."""
    ordered = [batch for _, batch in sorted(good_by_partition.items()) if len(batch)]
    users = [(p, encode(chunk)) for p, batch in sorted(good_by_partition.items()) for chunk in batch.chunks()]
    films = [(q, encode(chunk)) for q, batch in sorted(film_batches(ordered, partitions).items())
             for chunk in batch.chunks()]
    return users, films
