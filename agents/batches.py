"""Stats batch messages: what the loader hands the stats agents.

Why batches: Faust's per-message machinery costs far more than the stats
arithmetic (docs/ingestion.md), so after storing a batch the loader sends, per
source partition p, the columns the stats need to `{APP_ID}-user-batches`
partition p, and per film partition q the film actions to
`{APP_ID}-film-batches` partition q, at most MAX_EVENTS_PER_MESSAGE events
per message. Each stats agent folds a whole message inside one stream
iteration, and table changelogs land on p / q, where the keys they hold
belong (same placement as per-event topics, so recovery and standbys work).

Every event carries its SOURCE position (partition and offset in
`interactions`): stable across re-deliveries, so the agents can tell an
event they already applied from a new one (agents/stats.py).

Wire format: msgpack list [FORMAT, then one little-endian array per column of
STAT_COLUMNS as raw bytes]; encoding and decoding are a copy per column,
nothing per event (the former msgpack list of Python values cost ~5% of the
worker's CPU to build and to read back).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

import msgpack
import numpy as np
from aiokafka.partitioner import DefaultPartitioner

from app.event_columns import TYPE_CODE, TYPE_NAMES, EventColumns
from app.events import Event
from app.schema import EVENT_TYPES

FORMAT = 2
STAT_COLUMNS = ("user_id", "film_id", "event_type", "ts", "watch_seconds", "rating", "partition", "offset")
DTYPES = {"user_id": np.dtype("<i8"), "film_id": np.dtype("<i8"), "event_type": np.dtype("i1"),
          "ts": np.dtype("<f8"), "watch_seconds": np.dtype("<f8"), "rating": np.dtype("<f8"),
          "partition": np.dtype("<i4"), "offset": np.dtype("<i8")}
# 53 bytes per event: a message stays near 430 KB, below Kafka's 1 MB default and
# the producer's 512 KB batch (app/main.py), so one message per source partition
# carries a 20,000-event loader batch spread over 4 partitions.
MAX_EVENTS_PER_MESSAGE = 8192
# Events the per-film stats use (views, completes, ratings).
FILM_ACTION_TYPES = frozenset({"play", "complete", "rate"})
_FILM_ACTION_CODES = np.array([TYPE_CODE[name] for name in sorted(FILM_ACTION_TYPES)], dtype=np.int8)
_partitioner = DefaultPartitioner()


class InvalidBatch(ValueError):
    """A stats batch message that does not decode (never produced by this code)."""


@dataclass(slots=True)
class StatsBatch:
    """The stats columns of some events with their source positions: row i is an event
    at `offset[i]` of `interactions` partition `partition[i]` (columns as in DTYPES)."""

    user_id: np.ndarray
    film_id: np.ndarray
    event_type: np.ndarray
    ts: np.ndarray
    watch_seconds: np.ndarray
    rating: np.ndarray
    partition: np.ndarray
    offset: np.ndarray

    @classmethod
    def empty(cls) -> "StatsBatch":
        return cls(*(np.empty(0, dtype=DTYPES[name]) for name in STAT_COLUMNS))

    @classmethod
    def from_columns(cls, columns: EventColumns, partition: np.ndarray, offset: np.ndarray) -> "StatsBatch":
        return cls(*(np.asarray(getattr(columns, name), dtype=DTYPES[name])
                     for name in STAT_COLUMNS[:-2]), np.asarray(partition, dtype=DTYPES["partition"]),
                   np.asarray(offset, dtype=DTYPES["offset"]))

    @classmethod
    def from_events(cls, events: Sequence[Event], partitions: Sequence[int], offsets: Sequence[int]) -> "StatsBatch":
        """Hand-built batches (tests): `events[i]` at `offsets[i]` of partition `partitions[i]`."""
        return cls.from_columns(EventColumns.from_events(list(events)), partitions, offsets)

    @classmethod
    def of_partition(cls, partition: int, events: Sequence[Event], offsets: Sequence[int]) -> "StatsBatch":
        return cls.from_events(events, [partition] * len(events), list(offsets))

    def __len__(self) -> int:
        return len(self.offset)

    def __getitem__(self, index: slice | np.ndarray) -> "StatsBatch":
        return StatsBatch(*(getattr(self, name)[index] for name in STAT_COLUMNS))

    def events(self) -> list[Event]:
        """The rows as `Event`s (event_id, text fields and duration empty: the stats do not use them)."""
        names = TYPE_NAMES[self.event_type].tolist()
        return [Event("", user, film, kind, ts, "", watch, 0.0, rating)
                for user, film, kind, ts, watch, rating in zip(
                    self.user_id.tolist(), self.film_id.tolist(), names, self.ts.tolist(),
                    self.watch_seconds.tolist(), self.rating.tolist())]

    def rows(self) -> Iterator[tuple[Event, int, int]]:
        return zip(self.events(), self.partition.tolist(), self.offset.tolist())

    def chunks(self, size: int = MAX_EVENTS_PER_MESSAGE) -> Iterator["StatsBatch"]:
        """Consecutive pieces of at most `size` events (order kept)."""
        for start in range(0, len(self), size):
            yield self[start:start + size]


def encode(batch: StatsBatch) -> bytes:
    """The stats columns of `batch` as one compact message."""
    return msgpack.packb([FORMAT, *(np.ascontiguousarray(getattr(batch, name), dtype=DTYPES[name]).tobytes()
                                    for name in STAT_COLUMNS)])


def decode(raw: bytes) -> StatsBatch:
    """The batch `encode` made."""
    try:
        parts = msgpack.unpackb(raw)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise InvalidBatch(f"not msgpack: {exc}") from None
    if not isinstance(parts, list) or len(parts) != len(STAT_COLUMNS) + 1 or parts[0] != FORMAT:
        raise InvalidBatch(f"expected format {FORMAT}: [{FORMAT}, {len(STAT_COLUMNS)} columns {STAT_COLUMNS}]")
    if not all(isinstance(part, bytes) for part in parts[1:]):
        raise InvalidBatch("columns must be bytes")
    try:
        columns = [np.frombuffer(part, dtype=DTYPES[name]) for name, part in zip(STAT_COLUMNS, parts[1:])]
    except ValueError as exc:
        raise InvalidBatch(f"bad column: {exc}") from None
    if len({len(column) for column in columns}) > 1:
        raise InvalidBatch("columns of different lengths")
    batch = StatsBatch(*columns)
    if len(batch) and (batch.event_type.min() < 0 or batch.event_type.max() >= len(EVENT_TYPES)):
        raise InvalidBatch("bad value: event type code out of range")
    if len(batch) and (batch.partition.min() < 0 or batch.offset.min() < 0):
        raise InvalidBatch("bad value: negative source partition or offset")
    return batch


@functools.lru_cache(maxsize=65_536)
def film_partition(film_id: int, partitions: int) -> int:
    """Partition of a film's key `str(film_id)` under Kafka's default (murmur2) partitioner.

    The same placement the film tables' changelog keys get, so a film's stats
    stay on one partition whoever produced them. Cached: murmur2 is pure Python.
    """
    every = list(range(partitions))
    return _partitioner(str(film_id).encode(), every, every)


def film_partitions(film_ids: np.ndarray, partitions: int) -> np.ndarray:
    """`film_partition` of every film id (computed once per distinct film)."""
    films, inverse = np.unique(film_ids, return_inverse=True)
    return np.array([film_partition(f, partitions) for f in films.tolist()], dtype=np.int32)[inverse]


def film_batches(batches: Sequence[StatsBatch], partitions: int) -> dict[int, StatsBatch]:
    """Film actions of `batches` grouped by film partition (order kept within a partition)."""
    if not batches:
        return {}
    every = batches[0] if len(batches) == 1 else StatsBatch(
        *(np.concatenate([getattr(b, name) for b in batches]) for name in STAT_COLUMNS))
    actions = every[np.isin(every.event_type, _FILM_ACTION_CODES)]
    if not len(actions):
        return {}
    placed = film_partitions(actions.film_id, partitions)
    return {q: actions[placed == q] for q in np.unique(placed).tolist()}


def stats_messages(
    good_by_partition: Mapping[int, StatsBatch], partitions: int
) -> tuple[list[tuple[int, bytes]], list[tuple[int, bytes]]]:
    """(user-batch messages, film-batch messages) as (partition, value) for one loaded batch."""
    ordered = [batch for _, batch in sorted(good_by_partition.items()) if len(batch)]
    users = [(p, encode(chunk)) for p, batch in sorted(good_by_partition.items()) for chunk in batch.chunks()]
    films = [(q, encode(chunk)) for q, batch in sorted(film_batches(ordered, partitions).items())
             for chunk in batch.chunks()]
    return users, films
