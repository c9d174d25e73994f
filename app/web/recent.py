"""Recent watches from the Faust worker's own `user_stats` table, no network hop.

The stats agent folds each user's events into `tables.stats.user_stats`
(record field `recent`: film ids, newest first, at most RECENT_MAX) and
mirrors that list to Redis (`live:recent:{id}`) every half second. A worker
that owns the user's partition therefore holds the same list, fresher, in
its own memory. `TableRecent.recent` answers from the table only when:
- statistics run in this worker (STATS_ENABLED),
- no rebalance (or the table recovery that ends it) is under way, and
- the user's partition (Kafka's murmur2 of the key, as the loader and the
  table use) is among the user-batches partitions assigned at the last rebalance;
otherwise it returns None and the reader uses the Redis mirror. A user the
owning worker has no record of has no recent watches.
"""
from __future__ import annotations

import functools
from typing import Any, Iterable, Protocol

from aiokafka.partitioner import DefaultPartitioner

from app.settings import Settings
from app.storage import redis_keys

_partitioner = DefaultPartitioner()


class _Store(Protocol):
    def get(self, key: Any, default: Any = None) -> Any: ...


class _Table(Protocol):
    data: _Store


class _TopicPartition(Protocol):
    topic: str
    partition: int


@functools.lru_cache(maxsize=1 << 17)
def user_partition(user_id: int, partitions: int) -> int:
    """Partition of a user's key `str(user_id)` under Kafka's default partitioner (cached:
    murmur2 is pure Python, ~3 us)."""
    every = list(range(partitions))
    return _partitioner(str(user_id).encode(), every, every)


class TableRecent:
    """`RecentSource` over the worker's `user_stats` table (see the module docstring)."""

    def __init__(self, app: Any, table: _Table, settings: Settings) -> None:
        self._app = app
        self._table = table
        self._topic = settings.user_batches_topic
        self._partitions = settings.topic_partitions
        self._enabled = settings.stats_enabled
        self._owned: frozenset[int] = frozenset()
        self._all = False
        app.on_partitions_revoked.connect(self._on_revoked)
        app.on_partitions_assigned.connect(self._on_assigned)

    def _on_revoked(self, sender: Any, revoked: Iterable[_TopicPartition], **kwargs: Any) -> None:
        self.owned = frozenset()

    def _on_assigned(self, sender: Any, assigned: Iterable[_TopicPartition], **kwargs: Any) -> None:
        self.owned = frozenset(tp.partition for tp in assigned if tp.topic == self._topic)

    @property
    def owned(self) -> frozenset[int]:
        """Partitions of user-batches (= of users) this worker folds into its table."""
        return self._owned

    @owned.setter
    def owned(self, partitions: frozenset[int]) -> None:
        self._owned = partitions
        self._all = len(partitions) >= self._partitions

    def recent(self, user_id: int) -> list[int] | None:
        if not self._enabled or not self._owned or self._app.rebalancing:
            return None
        if not self._all and user_partition(user_id, self._partitions) not in self._owned:
            return None
        record = self._table.data.get(user_id)  # the store itself: Table.get adds ~2 us of sensors per call
        return list(record["recent"]) if record else []

    def counts(self, user_id: int) -> dict[str, float] | None:
        """The counts `agents.live.user_counts` mirrors from the same record (asked after `recent`)."""
        record = self._table.data.get(user_id)
        if not record:
            return None
        return redis_keys.live_user_counts(record)
