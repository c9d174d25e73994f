"""Loader steps without I/O: parsing a fetched batch (dead letters, repeated event_ids, offsets),
the stats batches it hands on, and the progress `/ready` reads."""
from __future__ import annotations

from typing import NamedTuple

from aiokafka import TopicPartition

from app.events import Event
from agents.loader import LoaderProgress, _Assignments, parse_batch, stats_batches, still_assigned


class Msg(NamedTuple):
    key: bytes | None
    value: bytes | None
    topic: str
    partition: int
    offset: int


def _event(i: int, user: int = 5) -> Event:
    return Event(f"e{i}", user, 3, "play", 1_700_000_000.0 + i)


def test_a_batch_is_split_deduplicated_and_offset_per_partition() -> None:
    p0 = [Msg(b"5", _event(1).to_bytes(), "t", 0, 10), Msg(b"5", b"{bad", "t", 0, 11),
          Msg(b"5", _event(1).to_bytes(), "t", 0, 12),  # the producer sent e1 twice
          Msg(b"5", _event(2).to_bytes(), "t", 0, 13)]
    p3 = [Msg(b"6", _event(3, user=6).to_bytes(), "t", 3, 7), Msg(b"6", _event(2).to_bytes(), "t", 3, 8)]
    parsed = parse_batch({TopicPartition("t", 0): p0, TopicPartition("t", 3): p3}, generation=4)
    assert [e.event_id for e in parsed.columns.events()] == ["e1", "e2", "e3"]  # first copies only
    assert parsed.columns.events()[0] == _event(1)
    assert [(m.partition, m.offset) for m in parsed.messages] == [(0, 10), (0, 13), (3, 7)]
    assert (parsed.partitions.tolist(), parsed.source_offsets.tolist()) == ([0, 0, 3], [10, 13, 7])
    assert [(d.reason, d.offset) for d in parsed.rejects] == [("malformed_json", 11)]
    assert parsed.offsets == {TopicPartition("t", 0): 14, TopicPartition("t", 3): 9}
    assert (parsed.generation, parsed.size) == (4, 6)
    by_partition = stats_batches(parsed.columns, parsed.partitions, parsed.source_offsets)
    assert {p: (b.partition.tolist(), b.offset.tolist()) for p, b in by_partition.items()} == {
        0: ([0, 0], [10, 13]), 3: ([3], [7])}
    assert by_partition[3].user_id.tolist() == [6]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_is_stalled_only_with_work_waiting_and_no_move_for_the_limit() -> None:
    clock = Clock()
    progress = LoaderProgress(stall_s=60, clock=clock)
    clock.now = 1000.0
    assert progress.stall() is None  # nothing to do: idle is not stalled
    progress.fetched(500)
    clock.now = 1059.0
    assert progress.stall() is None
    clock.now = 1061.0
    assert "no progress for 61s with 500 messages" in progress.stall()
    progress.finished(500)
    assert progress.stall() is None
    progress.idle(waiting=20)  # the fetch knows of 20 more it has not got yet
    clock.now = 1200.0
    assert "20 messages" in progress.stall()
    progress.idle(waiting=0)
    assert progress.stall() is None


def test_a_batch_of_an_older_assignment_commits_only_the_partitions_still_assigned() -> None:
    kept, moved = TopicPartition("t", 2), TopicPartition("t", 5)
    offsets = {kept: 51, moved: 77}
    assert still_assigned(offsets, {kept, TopicPartition("t", 0)}) == {kept: 51}
    assert still_assigned(offsets, set()) == {}
    assert still_assigned(offsets, {kept, moved}) == offsets


async def test_a_commit_after_a_revocation_waits_for_the_new_assignment() -> None:
    listener = _Assignments()
    await listener.on_partitions_assigned([TopicPartition("t", 0), TopicPartition("t", 1)])
    assert listener.settled.is_set() and listener.generation == 1
    await listener.on_partitions_revoked([TopicPartition("t", 0), TopicPartition("t", 1)])
    assert not listener.settled.is_set()  # a commit now would carry the old generation
    await listener.on_partitions_assigned([TopicPartition("t", 1)])
    assert listener.settled.is_set() and listener.assigned == {TopicPartition("t", 1)}
    assert listener.generation == 3
