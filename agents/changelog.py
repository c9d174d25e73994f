"""Table writes of one stream iteration, sent to the table's changelog as whole Kafka batches.

Why (profiles in docs/ingestion.md): a Faust table write (`table[key] = value`)
queues one changelog message in Faust's producer buffer, which a task then
serialises and hands to aiokafka one by one: ~10 us of the worker's only
core per key, and the stats agents write about one key per event. Worse,
Faust's offset commit flushes that buffer (`producer.flush()` before the
commit), so while the agents kept it full the commit waited behind tens of
thousands of queued writes (`Timer commit is overlapping`, runtime up to 38 s).

Here an agent puts the values into the table's store itself (what
`table[key] = value` does after sending) and appends the changelog records to
an aiokafka batch per changelog partition, serialised with orjson the way
Faust's json codec does (tested: same bytes), then sends the batches at the
end of its stream iteration (`send`) and hands what awaits the broker's acks
to `app.commits.changelog_acks`: the iteration, and Faust's ack of the source
message, end once the records are sent (the agent folds the next message
while the broker acknowledges them), and every offset commit first waits for
the acks, so a source offset is never committed before the changelog records
it produced are stored. aiokafka sends one batch per partition at a time, in
the order given, so the records land in the order the agent wrote them.
Recovery, standby replicas and reads (`table[key]`, `table.get`) see exactly
what they would after Faust's own writes; the RocksDB store's persisted
changelog offset is advanced as Faust does after a send. Each agent owns one
producer for this (started and stopped with the agent).
"""
from __future__ import annotations

from functools import partial
from typing import Any, Awaitable, Iterable, Mapping

import orjson
from aiokafka import AIOKafkaProducer
from faust.types import TP

from app.settings import Settings
from app.table_store import raw_data

# A key or value as Faust's json codec writes it (faust.utils.json.dumps with orjson); a partial, not
# a function, as it runs twice per table write.
dumps = partial(orjson.dumps, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_UTC_Z)


def changelog_producer(settings: Settings) -> AIOKafkaProducer:
    """A producer for whole changelog batches (acks from every in-sync replica, like Faust's)."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, client_id=f"{settings.app_id}-changelog", acks="all",
        max_batch_size=512 * 1024, request_timeout_ms=int(max(settings.network_timeout_s * 6, 30.0) * 1000),
    )


class Changelog:
    """Writes to one table: records batched per changelog partition until `send()`, values stored."""

    def __init__(self, table: Any, producer: AIOKafkaProducer) -> None:
        self.table = table
        self.topic = table.changelog_topic_name
        self.producer = producer
        self._builders: dict[int, list] = {}
        self._persisted: dict[TP, int] = {}

    def record(self, items: Iterable[tuple[Any, Any]], partition: int) -> None:
        """The changelog records of (key, value) pairs, for `partition` at the next send, the table
        untouched: a stats agent's fold thread encodes them while the event loop goes on, and the
        agent then `store`s the values in its iteration."""
        append = self._append
        for key, value in items:
            append(partition, dumps(key), dumps(value))

    def store(self, items: Mapping[Any, Any]) -> None:
        """`table[key] = value` for each item, without changelog records (those are `record`ed)."""
        data = raw_data(self.table)
        for key, value in items.items():  # not `update`: Faust's RocksDB store has none that works
            data[key] = value

    def delete(self, key: Any, partition: int) -> None:
        """`del table[key]` (a tombstone record: a null value, as Faust writes)."""
        if key in self.table.data:
            del self.table.data[key]
        self._append(partition, dumps(key), None)

    def _append(self, partition: int, key: bytes, value: bytes | None) -> None:
        builders = self._builders.setdefault(partition, [])
        if builders and builders[-1].append(timestamp=None, key=key, value=value) is not None:
            return
        builder = self.producer.create_batch()
        if builder.append(timestamp=None, key=key, value=value) is None:
            raise ValueError(f"a {self.table.name} changelog record of {len(key) + len(value or b'')} bytes "
                             "does not fit a producer batch")
        builders.append(builder)

    def pending(self) -> int:
        return sum(builder.record_count() for builders in self._builders.values() for builder in builders)

    async def send(self) -> Awaitable[None]:
        """Send every batch (in call order, which aiokafka keeps per partition) and return what
        awaits the broker's acks, then records the persisted offsets: the agent's iteration ends
        after the send, and offset commits wait for the acks (app/commits.py)."""
        builders, self._builders = self._builders, {}
        sent = []
        for partition, batches in builders.items():
            for builder in batches:
                sent.append((partition, builder.record_count(),
                             await self.producer.send_batch(builder, self.topic, partition=partition)))
        return self._acked(sent)

    async def _acked(self, sent: list[tuple[int, int, Awaitable]]) -> None:
        last: dict[int, int] = {}
        for partition, count, future in sent:
            metadata = await future
            last[partition] = max(last.get(partition, -1), metadata.offset + count - 1)
        for partition, offset in last.items():
            tp = TP(self.topic, partition)
            # acks of two sends may be awaited in either order: the persisted offset only advances
            if offset > self._persisted.get(tp, -1):
                self._persisted[tp] = offset
                self.table.data.set_persisted_offset(tp, offset)
