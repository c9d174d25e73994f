"""Offset commits wait for the changelog writes in flight; commit requests of idle agents coalesce."""
from __future__ import annotations

import asyncio

import pytest

from app import commits


class Committing:
    """Stands in for Faust's consumer below `_commit_offsets` (the commit itself)."""

    def __init__(self) -> None:
        self.committed: list[dict] = []

    async def _commit_offsets(self, offsets, start_new_transaction: bool = True) -> bool:
        self.committed.append(offsets)
        return True


Gated = commits.gated(Committing)


@pytest.fixture
def acks(monkeypatch) -> commits.ChangelogAcks:
    fresh = commits.ChangelogAcks()
    monkeypatch.setattr(commits, "changelog_acks", fresh)
    return fresh


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_commit_waits_for_the_writes_in_flight_when_it_starts_not_for_later_ones(acks) -> None:
    loop = asyncio.get_running_loop()
    before, after = loop.create_future(), loop.create_future()
    consumer = Gated()
    acks.track(before)
    commit = asyncio.ensure_future(consumer._commit_offsets({"tp": 5}))
    await settle()
    acks.track(after)  # sent after the commit chose its offsets: a message the commit does not cover
    assert consumer.committed == [] and acks.in_flight() == 2
    before.set_result(None)
    assert await commit is True
    assert consumer.committed == [{"tp": 5}] and not after.done()
    after.set_result(None)


async def test_after_a_failed_write_nothing_is_committed_any_more(acks) -> None:
    async def refused() -> None:
        raise OSError("broker gone")

    consumer = Gated()
    acks.track(refused())
    for _ in range(2):
        with pytest.raises(commits.ChangelogLost):
            await consumer._commit_offsets({"tp": 5})
    assert consumer.committed == []


def test_gating_is_applied_once_and_the_app_consumer_has_it() -> None:
    from app.main import app

    assert commits.gated(Gated) is Gated
    assert isinstance(app.consumer, commits.GatedCommits)
    assert any(commits.changelog_stored in receivers for receivers in app.on_partitions_revoked._filter_receivers.values())


async def test_revocation_waits_for_the_writes_in_flight(acks) -> None:
    write = asyncio.get_running_loop().create_future()
    acks.track(write)
    revoked = asyncio.ensure_future(commits.changelog_stored(None, set()))
    await settle()
    assert not revoked.done()
    write.set_result(None)
    await revoked


async def test_requests_made_during_a_commit_get_one_more_commit_after_it() -> None:
    soon = commits.CommitSoon(min_interval_s=0)
    running, release, count = asyncio.Event(), asyncio.Event(), []

    async def commit() -> None:
        count.append(1)
        running.set()
        await release.wait()
        release.clear()

    server = asyncio.ensure_future(soon.run(commit))
    soon.request()
    await running.wait()
    for _ in range(3):  # while the first commit runs: they coalesce into one
        soon.request()
    running.clear()
    release.set()
    await running.wait()
    release.set()
    await settle()
    assert len(count) == 2
    server.cancel()
