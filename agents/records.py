"""The loader's consumed messages as columns, read from aiokafka without a ConsumerRecord each.

Why: `AIOKafkaConsumer.getmany` builds a `ConsumerRecord` dataclass per
message (headers tuple, key and value sizes, ...) after the Cython record
batch already built a record object: in the loader-only profile of session 5
that was half of the event loop's busy time, about 2.3 us per message (docs/ingestion.md,
"Profile, session 5"). The loader needs only each message's offset, key and
value. `RawFetcher.getmany` takes them straight from the record batches the
fetcher has buffered (~0.5 us per message) and moves the consumer's position
exactly as `getmany` does, so commits, rebalances (a result fetched for a
partition no longer assigned, or after a seek, is dropped as aiokafka drops
it) and `highwater` stay aiokafka's own.

It reads aiokafka internals (the version is pinned in requirements/). When
anything is not as expected (other internals, `read_committed`, a result
that was already partly read), `RawFetcher` falls back to `getmany` for good,
with one warning: slower, never wrong.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
from dataclasses import dataclass
from typing import Any, Iterator, NamedTuple, Sequence

import numpy as np
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.consumer import fetcher as aiokafka_fetcher
from aiokafka.errors import ConsumerStoppedError, CorruptRecordException

log = logging.getLogger(__name__)


class Record(NamedTuple):
    """One consumed message (what `agents.deadletter.RawMessage` reads)."""

    key: bytes | None
    value: bytes | None
    topic: str
    partition: int
    offset: int


@dataclass(slots=True)
class RawRecords:
    """Messages of one topic as columns, in the order read; row i is `self[i]`."""

    topic: str
    partitions: np.ndarray  # int32
    offsets: np.ndarray  # int64
    keys: list
    values: list

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, i: int) -> Record:
        return Record(self.keys[i], self.values[i], self.topic, int(self.partitions[i]), int(self.offsets[i]))

    def __iter__(self) -> Iterator[Record]:
        return map(self.__getitem__, range(len(self)))

    def take(self, positions: Sequence[int] | np.ndarray) -> "RawRecords":
        """The rows at `positions`, in that order."""
        positions = np.asarray(positions, dtype=np.int64)
        picked = positions.tolist()
        return RawRecords(self.topic, self.partitions[positions], self.offsets[positions],
                          [self.keys[i] for i in picked], [self.values[i] for i in picked])

    @classmethod
    def of_partition(cls, tp: TopicPartition, offsets: list[int], keys: list, values: list) -> "RawRecords":
        return cls(tp.topic, np.full(len(values), tp.partition, dtype=np.int32), np.array(offsets, dtype=np.int64),
                   keys, values)

    @classmethod
    def from_messages(cls, messages: "Sequence[Any] | RawRecords") -> "RawRecords":
        """Columns of message objects with key, value, topic, partition, offset (ConsumerRecords, tests)."""
        if isinstance(messages, RawRecords):
            return messages
        messages = list(messages)
        topics = {m.topic for m in messages}
        if len(topics) > 1:
            raise ValueError(f"messages of one topic expected, got {sorted(topics)}")
        return cls(topics.pop() if topics else "", np.array([m.partition for m in messages], dtype=np.int32),
                   np.array([m.offset for m in messages], dtype=np.int64), [m.key for m in messages],
                   [m.value for m in messages])

    @classmethod
    def concat(cls, parts: Sequence["RawRecords"]) -> "RawRecords":
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return cls("", np.empty(0, dtype=np.int32), np.empty(0, dtype=np.int64), [], [])
        keys: list = []
        values: list = []
        for part in parts:  # list += copies pointers in C; a comprehension ran Python per row
            keys += part.keys
            values += part.values
        return cls(parts[0].topic, np.concatenate([p.partitions for p in parts]),
                   np.concatenate([p.offsets for p in parts]), keys, values)


class Unsupported(Exception):
    """aiokafka's internals are not what `RawFetcher` reads: use `getmany`."""


def _partition_records(result: Any) -> Any:
    """The untouched PartitionRecords of a FetchResult, or Unsupported."""
    records = getattr(result, "_partition_records", None)
    if records is None:
        return None  # dropped already (not fetchable): nothing to read
    if type(records) is not aiokafka_fetcher.PartitionRecords:
        raise Unsupported(f"unexpected partition records {type(records).__name__}")
    iterator = getattr(records, "_records_iterator", None)
    if not inspect.isgenerator(iterator) or inspect.getgeneratorstate(iterator) != inspect.GEN_CREATED:
        raise Unsupported("a fetch result was partly read already")
    return records


def read_partition(tp: TopicPartition, records: Any) -> RawRecords:
    """Offsets, keys and values of a PartitionRecords' batches, as its iterator would yield them
    (CRC checked when the consumer checks them, control batches skipped), and advance its
    `next_fetch_offset` as the iterator would."""
    start = records.next_fetch_offset
    memory = records._records
    offsets: list[int] = []
    keys: list = []
    values: list = []
    add_offset, add_key, add_value = offsets.append, keys.append, values.append  # the loop's only work
    next_offset = start
    while memory.has_next():
        batch = memory.next_batch()
        if records._check_crcs and not batch.validate_crc():
            raise CorruptRecordException(f"Invalid CRC - {tp}")
        if not batch.is_control_batch:
            for record in batch:
                if record.offset >= start:  # below: part of a compressed set read before
                    add_offset(record.offset)
                    add_key(record.key)
                    add_value(record.value)
        next_offset = batch.next_offset
    records.next_fetch_offset = max(next_offset, start)
    return RawRecords.of_partition(tp, offsets, keys, values)


class RawFetcher:
    """`getmany` of a started `AIOKafkaConsumer` (no explicit partitions), as `RawRecords` per partition."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self.consumer = consumer
        self.fallback: str | None = None  # why `getmany` is used instead, once it is

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, RawRecords]:
        """Up to about `max_records` messages (whole partition fetches: at most one fetch more),
        waiting up to `timeout_ms` for the first."""
        if self.fallback is None:
            try:
                return await self._read(timeout_ms / 1000, max_records)
            except Unsupported as exc:
                self.fallback = str(exc)
                log.warning("loader: reading aiokafka's record batches directly is not possible (%s); "
                            "using getmany from now on (slower, same results)", exc)
        got = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        return {tp: RawRecords.from_messages(messages) for tp, messages in got.items() if messages}

    async def _read(self, timeout: float, max_records: int) -> dict[TopicPartition, RawRecords]:
        """`AIOKafkaConsumer.getmany` and `Fetcher.fetched_records` (aiokafka 0.14), minus the records."""
        consumer = self.consumer
        if consumer._closed:
            raise ConsumerStoppedError()
        fetcher = getattr(consumer, "_fetcher", None)
        if getattr(fetcher, "_isolation_level", None) != aiokafka_fetcher.READ_UNCOMMITTED:
            raise Unsupported("the consumer reads read_committed (aborted transactions are not filtered here)")
        consumer._coordinator.check_errors()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        with consumer._subscription.fetch_context():
            while True:
                if fetcher._subscriptions.reassignment_in_progress:
                    await fetcher._subscriptions.wait_for_assignment()
                drained = self._drain(fetcher, max_records)
                if drained or (remaining := deadline - loop.time()) <= 0:
                    return drained
                waiter = fetcher._create_fetch_waiter()
                done, pending = await asyncio.wait([waiter], timeout=remaining)
                if not done or fetcher._closed:
                    for future in pending:
                        future.cancel()
                    return {}
                waiter.result()  # an authorization error, as in aiokafka

    @staticmethod
    def _drain(fetcher: Any, max_records: int) -> dict[TopicPartition, RawRecords]:
        buffered = fetcher._records
        # check every result before touching any: a fallback must find the buffer as it was
        for result in buffered.values():
            if type(result) is aiokafka_fetcher.FetchResult:
                _partition_records(result)
            elif type(result) is not aiokafka_fetcher.FetchError:
                raise Unsupported(f"unexpected fetch result {type(result).__name__}")
        drained: dict[TopicPartition, RawRecords] = {}
        count = 0
        for tp in list(buffered):
            result = buffered[tp]
            if type(result) is aiokafka_fetcher.FetchError:
                if drained:
                    return drained  # raised on the next call, as in aiokafka
                del buffered[tp]
                fetcher._notify(fetcher._wait_consume_future)
                result.check_raise()
            records = _partition_records(result)
            try:
                if records is not None and result.check_assignment(tp):
                    read = read_partition(tp, records)
                    result._update_position()
                    if len(read):
                        drained[tp] = read
                        count += len(read)
            except CorruptRecordException:
                if not drained:
                    raise  # as aiokafka; the position did not move, the partition is fetched again
            finally:
                result._partition_records = None
                del buffered[tp]
                fetcher._notify(fetcher._wait_consume_future)
            if count >= max_records:
                break
        return drained
