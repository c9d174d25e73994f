"""The tables' in-memory store remembers how far of each changelog partition it holds.

Why (docs/scaling.md, "Measured: two workers"): Faust's `memory://` store
answers "no persisted offset" for every partition, so after EVERY rebalance
a worker re-read the whole changelog of each partition it kept, not only of
those it gained, and that partition's stats stayed paused meanwhile. When a
second worker joined, the first one spent 11 s re-reading its own two
partitions (it had written every record itself) while their stats batches
piled up: most of what made two workers slower than one.

This store records the last changelog offset it holds per partition: the
agents' writes (agents/changelog.py sets it after the broker acked them) and
the records recovery applied. Recovery then reads a kept partition from
there, as it does with RocksDB's persisted offsets; the changelog is
append-only, so whatever anyone wrote after that offset is still read. The
offset is forgotten whenever the partition's data may be incomplete: when
the partition is revoked or newly assigned (another worker may own it
meanwhile), and after a recovery for every partition that is not active
here (Faust's memory store drops their keys then).
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, MutableMapping, Optional, Set

import faust
from faust.stores import memory
from faust.types import TP, EventT
from yarl import URL


class KeepingMemoryStore(memory.Store):
    """Faust's in-memory store plus the changelog offset held per partition (module doc)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._held: dict[TP, int] = {}

    def persisted_offset(self, tp: TP) -> Optional[int]:
        """The last changelog offset of `tp` this store holds, or None (read from the start)."""
        return self._held.get(tp)

    def set_persisted_offset(self, tp: TP, offset: int) -> None:
        self._held[TP(tp.topic, tp.partition)] = max(offset, self._held.get(tp, -1))

    def apply_changelog_batch(self, batch: Iterable[EventT], to_key: Callable[[Any], Any],
                              to_value: Callable[[Any], Any]) -> None:
        """Faust's, recording the last offset applied per partition."""
        events = list(batch)
        super().apply_changelog_batch(events, to_key, to_value)
        last: dict[TP, int] = {}
        for event in events:
            message = event.message
            last[TP(message.topic, message.partition)] = message.offset
        for tp, offset in last.items():
            self.set_persisted_offset(tp, offset)

    async def on_rebalance(self, assigned: Set[TP], revoked: Set[TP], newly_assigned: Set[TP],
                           generation_id: int = 0) -> None:
        for tp in (*revoked, *newly_assigned):
            self._held.pop(TP(tp.topic, tp.partition), None)

    async def on_recovery_completed(self, active_tps: Set[TP], standby_tps: Set[TP]) -> None:
        await super().on_recovery_completed(active_tps, standby_tps)
        active = {TP(tp.topic, tp.partition) for tp in active_tps}
        for tp in [tp for tp in self._held if tp not in active]:
            del self._held[tp]


def raw_data(table: Any) -> MutableMapping:
    """The mapping under `table`'s store: for `memory://` the store's own dict, whose C-level
    `get` and `[key] = value` skip the store's Python mapping layers (the stats agents touch a
    key per user and film of every batch); any other store as it is."""
    store = table.data
    return store.data if isinstance(store, memory.Store) else store


class Table(faust.Table):
    """A Faust table whose `memory://` store is the `KeepingMemoryStore` (app/main.py `Table=`)."""

    def _new_store_by_url(self, url: str | URL) -> Any:
        if URL(str(url)).scheme != "memory":
            return super()._new_store_by_url(url)
        return KeepingMemoryStore(url, self.app, self, table_name=self.name, key_type=self.key_type,
                                  key_serializer=self.key_serializer, value_type=self.value_type,
                                  value_serializer=self.value_serializer, loop=self.loop, options=self.options)
