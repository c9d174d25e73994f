"""Recent watches from the worker's own table: only for users on partitions it owns, only between rebalances."""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given, strategies as st

from app.settings import Settings
from app.web.recent import TableRecent, user_partition

SETTINGS = Settings.from_env({"TOPIC_PARTITIONS": "4", "APP_ID": "rt"})


class TP(NamedTuple):
    topic: str
    partition: int


class Signal:
    def __init__(self) -> None:
        self.receivers: list[Callable[..., Any]] = []

    def connect(self, receiver: Callable[..., Any]) -> None:
        self.receivers.append(receiver)

    def send(self, *args: Any) -> None:
        for receiver in self.receivers:
            receiver(self, *args)


class FakeApp:
    """What TableRecent reads from a faust.App: the rebalance flag and the two assignment signals."""

    def __init__(self) -> None:
        self.rebalancing = False
        self.on_partitions_assigned = Signal()
        self.on_partitions_revoked = Signal()


class Table(NamedTuple):
    """A faust Table as TableRecent reads it: its store, `data`."""

    data: dict


def users_on(partition: int, count: int = 3) -> list[int]:
    return [u for u in range(1, 10_000) if user_partition(u, 4) == partition][:count]


def test_answers_only_for_owned_partitions_and_not_during_a_rebalance() -> None:
    app = FakeApp()
    table = Table({u: {"recent": [u, u + 1]} for u in range(1, 10_000) if u % 7})
    recent = TableRecent(app, table, SETTINGS)
    mine, theirs = users_on(1), users_on(2)
    assert recent.recent(mine[0]) is None  # nothing assigned yet: the Redis mirror answers

    app.on_partitions_assigned.send({TP("rt-user-batches", 1), TP("rt-user-batches", 3), TP("interactions", 2),
                                     TP("rt-user-stats-changelog", 2)})  # standby changelogs do not count
    for user in mine:
        assert recent.recent(user) == ([user, user + 1] if user % 7 else [])  # no record: no recent watches
    for user in theirs:
        assert recent.recent(user) is None

    app.rebalancing = True  # until the new assignment's tables are recovered
    assert recent.recent(mine[0]) is None
    app.rebalancing = False
    app.on_partitions_revoked.send({TP("rt-user-batches", 1)})
    assert recent.recent(mine[0]) is None


def test_every_partition_owned_needs_no_partition_lookup() -> None:
    app = FakeApp()
    recent = TableRecent(app, Table({5: {"recent": [9]}}), SETTINGS)
    app.on_partitions_assigned.send({TP("rt-user-batches", p) for p in range(4)})
    assert recent.recent(5) == [9] and recent.recent(6) == []


def test_statistics_off_means_no_table() -> None:
    app = FakeApp()
    recent = TableRecent(app, Table({5: {"recent": [9]}}), SETTINGS.with_overrides(stats_enabled=False))
    app.on_partitions_assigned.send({TP("rt-user-batches", p) for p in range(4)})
    assert recent.recent(5) is None


@given(st.integers(1, 2**63 - 1), st.integers(1, 64))
def test_user_partition_is_kafkas_default_partitioner_of_the_key(user_id: int, partitions: int) -> None:
    """The producer keys `interactions` by the user id in ASCII; the loader keeps the partition."""
    every = list(range(partitions))
    assert user_partition(user_id, partitions) == DefaultPartitioner()(str(user_id).encode(), every, every)


def test_counts_are_what_the_mirror_writes_of_the_same_record() -> None:
    from agents.live import user_counts
    from agents.folds import apply_user
    from app.events import Event
    from app.storage import redis_keys

    record = None
    for ts, kind, rating in ((100.0, "play", None), (160.0, "rate", 4.0), (220.0, "play", None)):
        record = apply_user(record, Event("e", 5, 9, kind, ts, rating=rating) if rating else Event("e", 5, 9, kind, ts))
    app = FakeApp()
    recent = TableRecent(app, Table({5: record}), SETTINGS)
    app.on_partitions_assigned.send({TP("rt-user-batches", p) for p in range(4)})
    assert recent.recent(5) == [9]
    assert recent.counts(5) == redis_keys.decode_live_user(user_counts(record))
    assert recent.counts(5)["ratings"] == 1 and recent.counts(6) is None
