"""Faust offset commits that wait for the stats agents' changelog writes, and commits when idle.

Why (docs/ingestion.md, "Live statistics"): a stats agent folds message N+1
while the broker acknowledges message N's changelog records, so its
iteration (and Faust's ack of the source message) ends once the records are
SENT, not once they are stored. What keeps "a committed source offset means
its changelog records are stored" true is that every offset commit first
waits for the changelog writes in flight (`ChangelogAcks.settled`), on every
path Faust commits by (timer, `broker_commit_every`, a revocation's and a
stop's `wait_empty`, an agent error): they all go through
`Consumer._commit_offsets`, which `GatedCommits` wraps, with the offsets
already chosen, so a write sent after that choice belongs to a message the
commit does not cover. A revocation also waits for them (the app's
`on_partitions_revoked` signal), so that the next owner of a partition
recovers its table only after this worker's last writes are in the changelog.

A write that fails is fatal: the worker's tables then hold values the
changelog lacks, so every later commit raises (Faust crashes the worker on
it) and the next owner re-folds from the last commit, which the source-offset
marks keep exact.

`CommitSoon`: Faust commits every `broker_commit_interval` (2.8 s); an agent
that has folded everything it had asks for a commit at once, so the committed
offsets (the group's lag, what a crash re-delivers, `group_caught_up`) follow
the folds when the agents keep up; under a backlog they are never idle and
the timer commits as before. At most one such commit per 0.25 s: the agents
go idle between loader batches, and unspaced they asked for ~9 commits a
second under full load (87 in a 1M-event benchmark run).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable

log = logging.getLogger(__name__)


class ChangelogLost(RuntimeError):
    """A changelog write failed: no source offset may be committed any more (module doc)."""


class ChangelogAcks:
    """Changelog writes sent and not yet acknowledged by the broker, which commits wait for."""

    def __init__(self) -> None:
        self._pending: set[asyncio.Future] = set()
        self._lost: BaseException | None = None

    def track(self, acked: Awaitable[Any]) -> asyncio.Future:
        """Count `acked` (awaits the broker's acks of writes already sent) as in flight until done."""
        future = asyncio.ensure_future(acked)
        self._pending.add(future)
        future.add_done_callback(self._done)
        return future

    def _done(self, future: asyncio.Future) -> None:
        self._pending.discard(future)
        if not future.cancelled() and future.exception() is not None and self._lost is None:
            self._lost = future.exception()
            log.error("a changelog write failed (%r): no offset will be committed any more, the worker "
                      "must restart (its tables hold values the changelog lacks)", self._lost)

    def in_flight(self) -> int:
        return len(self._pending)

    async def settled(self) -> None:
        """Return once every write in flight now is acknowledged; raise `ChangelogLost` if any write
        ever failed (then nothing may be committed)."""
        if self._pending:
            await asyncio.wait(list(self._pending))
        if self._lost is not None:
            raise ChangelogLost("a stats changelog write failed; not committing") from self._lost


changelog_acks = ChangelogAcks()


class GatedCommits:
    """Mixin for Faust's consumer: an offset commit first waits for the changelog writes in flight."""

    async def _commit_offsets(self, offsets: Any, start_new_transaction: bool = True) -> bool:
        await changelog_acks.settled()
        return await super()._commit_offsets(  # type: ignore[misc]
            offsets, start_new_transaction=start_new_transaction)


def gated(consumer_class: type) -> type:
    """`consumer_class` with `GatedCommits` (itself when it has it already)."""
    if issubclass(consumer_class, GatedCommits):
        return consumer_class
    return type(f"Gated{consumer_class.__name__}", (GatedCommits, consumer_class), {"__module__": __name__})


async def changelog_stored(app: Any, revoked: Any, **kwargs: Any) -> None:
    """Receiver of the app's `on_partitions_revoked`: the next owner of a partition recovers its table
    from the changelog's end, so this worker's writes in flight must be stored first."""
    await changelog_acks.settled()


class CommitSoon:
    """Commit requests from idle agents, coalesced: one commit at a time and at most one per
    `min_interval_s`; the requests made meanwhile get one commit after it (module doc)."""

    def __init__(self, min_interval_s: float = 0.25) -> None:
        self._wanted = asyncio.Event()
        self.min_interval_s = min_interval_s

    def request(self) -> None:
        self._wanted.set()

    async def run(self, commit: Callable[[], Awaitable[Any]],
                  wait_other: Callable[[], Awaitable[Any]] | None = None) -> None:
        """Serve requests forever: `wait_other()` (a commit Faust started itself, which may have
        chosen its offsets before the request), then `commit()`."""
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            if wait_other is not None:
                await wait_other()
            try:
                await commit()
            except ChangelogLost:
                raise
            except Exception as exc:  # the timer commits later; a commit error is Faust's to handle
                log.warning("commit on idle failed (%r); Faust's commit timer goes on", exc)
            await asyncio.sleep(self.min_interval_s)


commit_soon = CommitSoon()
