"""Stats agents: rolling per-user and per-film statistics, trending, live mirrors.

Both read the loader's stats batches (agents/batches.py), one message per
loaded batch and partition, and fold the whole batch inside ONE stream
iteration (Faust's per-message cost is paid per batch, not per event):
- `user_stats_agent` reads `{APP_ID}-user-batches` (partition p = source
  partition p, keyed by user like `interactions`), folds the events into
  `tables.stats.user_stats` (one write per user per batch) and mirrors the
  users' recent watches to Redis;
- `film_stats_agent` reads `{APP_ID}-film-batches` (partition q = the films
  hashing to q) and folds into `film_stats`, `film_viewers` and
  `film_plays_hourly` (plays per film and hour of event time, one entry per
  partition and hour), from which the mirror computes this worker's trending
  part at each flush after new plays.
Each agent folds in a thread of its own (`user-fold`, `film-fold`): the fold
and the encoding of its changelog records are pure CPU work that only reads
the tables, and on the event loop they held up the loader and Faust's own
work for the whole batch (profile in docs/ingestion.md, session 5); numpy
releases the GIL and the loop gets it back at least every switch interval.
Messages are still folded one after the other, in partition order: the
iteration awaits its fold. Table writes happen inside the iteration, on the
loop, so changelogs go to p / q, the partition that owns the keys; they are
sent as whole Kafka batches at the end of the iteration (agents/changelog.py:
Faust's per-key changelog path was the largest cost of the stats path and
made its offset commits wait). The iteration does not wait for the broker's
acks: the agent folds the next message meanwhile, and every offset commit
waits for the acks in flight instead (app/commits.py; measured: the acks
were half of each agent's time). The agent acks the message itself after
the send and, when nothing else is buffered, asks for a commit at once
(`_done`). A stop that cancels an agent in the middle of a message lets the
message's work (fold, writes, send) finish first (`_completed`): the stream
acks the message on the way out (its `finally`), and the consumer's last
commit would otherwise cover a batch whose changelog was never sent, so the
next owner skipped it (found by tests/integration/test_multiworker.py); the
agent stops its producer only once its writes are acknowledged (`_stop`).
The loader sends only valid events, each event_id once per loaded batch.

Exactly once per source position: a stats batch is re-sent whenever the
loader re-reads `interactions` (a crash, a rebalance), and Faust re-delivers
stats batches after a worker crash. Every event carries its source partition
and offset; each user and film record keeps the last source offset applied
per source partition and skips events at or below it (agents/folds.py, the
pure, vectorised folds; docs/ingestion.md explains why this is exact).

Per-user records and per-(film, user) viewer entries expire after
STATS_TTL_DAYS without a write (`Expiry`).
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Awaitable, Iterable, Iterator, NamedTuple

from app.commits import changelog_acks, commit_soon
from app.main import app, settings
from app.table_store import raw_data
from app.topics import film_batches_topic, user_batches_topic
from agents import batches
from agents.changelog import Changelog, changelog_producer
from agents.folds import expired_users, expired_viewers, fold_films, fold_users
from agents.trending import add_plays, hours_of, latest_play, play_buckets, trending
from agents.live import LiveMirror, top_k
from tables.stats import TRENDING_EXPIRES, TRENDING_WINDOW, film_plays_hourly, film_stats, film_viewers, user_stats

log = logging.getLogger(__name__)


def _decoded(raw: bytes, what: str) -> batches.StatsBatch:
    """A stats batch; a corrupt message is logged and skipped (it never blocks the stream)."""
    try:
        return batches.decode(raw)
    except batches.InvalidBatch as exc:
        log.error("skipping a corrupt %s message: %s", what, exc)
        return batches.StatsBatch.empty()


class Expiry:
    """When entries expire (STATS_TTL_DAYS without a write) and when each partition is swept.

    A sweep scans the table for one partition's expired entries, inside that
    partition's stream iteration (deletes must go to the partition's
    changelog), at most every `every_s` (a tenth of the TTL, at most an hour).
    The sweep times are the agent's own bookkeeping, not stream state: after
    a restart every partition is simply swept once more.
    """

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self.every_s = min(ttl_s / 10, 3600.0)
        self._swept: dict[int, float] = {}

    def due(self, partition: int, now: float) -> bool:
        if now - self._swept.get(partition, -math.inf) < self.every_s:
            return False
        self._swept[partition] = now
        return True


def _expiry() -> Expiry:
    return Expiry(settings.stats_ttl_days * 86_400)


async def _completed(work: Awaitable) -> None:
    """Await one message's work (fold, table writes, changelog send); if the agent is cancelled
    meanwhile (a stop, a rebalance), the work still completes before the cancellation goes on
    (module doc)."""
    running = asyncio.ensure_future(work)
    try:
        await asyncio.shield(running)
    except asyncio.CancelledError:
        await running
        raise


async def _done(stream, event) -> None:
    """Ack the message now (the stream would once the agent asks for the next one) and, when no
    other message is buffered, ask for an offset commit at once (app/commits.py `CommitSoon`)."""
    await stream.ack(event)
    if stream.channel.queue.empty():
        commit_soon.request()


async def _stop(producer) -> None:
    """Stop the agent's changelog producer once every changelog write in flight is acknowledged."""
    try:
        await changelog_acks.settled()
    finally:
        await producer.stop()


def _sweep(changelog: Changelog, keys: list, what: str, partition: int) -> None:
    for key in keys:
        changelog.delete(key, partition)
    if keys:
        log.info("expired %d %s of partition %d (no write for STATS_TTL_DAYS=%g)",
                 len(keys), what, partition, settings.stats_ttl_days)


@contextlib.contextmanager
def _fold_thread(name: str) -> Iterator[ThreadPoolExecutor]:
    """The agent's own thread for its folds (module doc: the event loop goes on meanwhile)."""
    thread = ThreadPoolExecutor(1, thread_name_prefix=name)
    try:
        yield thread
    finally:
        thread.shutdown(wait=False)


def _fold_users_of(batch: batches.StatsBatch, partition: int, now: float,
                   users: Changelog) -> tuple[dict[int, dict[str, Any]], list[int]]:
    """(new record of every user in `batch`, the users whose recent list changed), their changelog
    records appended to `users`: the fold thread's part, which only reads the table."""
    changed: list[int] = []
    folded = fold_users(raw_data(user_stats).get, batch, now, lambda user, _: changed.append(user))
    users.record(folded.items(), partition)
    return folded, changed


async def fold_user_batches(stream) -> None:
    """Fold each user batch into per-user stats (one table write per user) and mirror recent watches.

    A user's recent list goes to Redis only when it changed (most watch events
    are `progress` on the film already in front).
    """
    mirror = LiveMirror(settings)
    flusher = asyncio.ensure_future(mirror.run())
    producer = changelog_producer(settings)
    await producer.start()
    users = Changelog(user_stats, producer)
    expiry = _expiry()
    loop = asyncio.get_running_loop()

    async def fold(message, thread: ThreadPoolExecutor) -> None:
        now, partition = time.time(), message.message.partition
        batch = _decoded(message.value, "user batch")
        folded, changed = await loop.run_in_executor(thread, _fold_users_of, batch, partition, now, users)
        users.store(folded)
        for user_id in changed:
            mirror.set_user(user_id, folded[user_id])
        if expiry.due(partition, now):
            _sweep(users, expired_users(user_stats.items(), partition, now - expiry.ttl_s), "users", partition)
        changelog_acks.track(await users.send())

    try:
        with _fold_thread("user-fold") as thread:
            async for message in stream.events():
                await _completed(fold(message, thread))
                await _done(stream, message)
    finally:
        flusher.cancel()
        await _stop(producer)


def trending_at(ts: float, partitions: Iterable[int] | None = None) -> tuple[list[int], list[float]]:
    """Top films by plays in the last TRENDING_WINDOW (event time) up to `ts`, over the film
    partitions this worker actively owns (or those given)."""
    if partitions is None:
        topic = film_batches_topic.get_topic_name()
        partitions = {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topic}
    return top_k(trending(film_plays_hourly.data.get, partitions, ts).items())


class _FilmFold(NamedTuple):
    films: dict[int, dict[str, Any]]  # new record of every film in the batch
    viewers: dict[str, list]  # viewer entries to write
    hours: dict[str, dict[str, int]]  # plays per hour entries to write (agents/trending.py)
    latest_play: float | None  # event time of the latest play counted, None when none was


def _fold_films_of(batch: batches.StatsBatch, partition: int, now: float, ttl_s: float,
                   changelogs: tuple[Changelog, Changelog, Changelog]) -> _FilmFold:
    """The fold thread's part of a film batch (it only reads the tables): per-film stats, viewers,
    and the plays applied now per hour, their changelog records appended to `changelogs` (films,
    viewers, hours). Plays older than TRENDING_EXPIRES + TRENDING_WINDOW
    (wall clock) are not counted per hour: their hours are past any trending window and swept,
    and replays of old history would write changelog entries for nothing."""
    folded, entries, applied = fold_films(
        raw_data(film_stats).get, raw_data(film_viewers).get, batch, now, refresh_before=now - ttl_s / 2)
    buckets = play_buckets(applied, since=now - (TRENDING_EXPIRES + TRENDING_WINDOW).total_seconds())
    hours = add_plays(raw_data(film_plays_hourly).get, buckets, partition)
    for changelog, items in zip(changelogs, (folded, entries, hours)):
        changelog.record(items.items(), partition)
    return _FilmFold(folded, entries, hours, latest_play(applied) if buckets else None)


async def fold_film_batches(stream) -> None:
    """Fold each film batch into per-film stats, viewers and windowed plays; publish trending ~1/s.

    Only the plays applied now (not re-deliveries) are counted per hour. The trending window ends
    with the newest play this agent has counted, not the last batch's: partitions are folded in
    any order, and a batch of a partition that lags behind would otherwise move the window back
    and drop the newer hours' plays from the list (seen as a flaky tests/integration/test_ingest.py).
    """
    mirror = LiveMirror(settings)
    flusher = asyncio.ensure_future(mirror.run())
    producer = changelog_producer(settings)
    await producer.start()
    films, viewers = Changelog(film_stats, producer), Changelog(film_viewers, producer)
    hourly = Changelog(film_plays_hourly, producer)
    expiry = _expiry()
    loop = asyncio.get_running_loop()
    newest_play = -math.inf

    async def fold(message, thread: ThreadPoolExecutor) -> None:
        nonlocal newest_play
        now, partition = time.time(), message.message.partition
        batch = _decoded(message.value, "film batch")
        folded = await loop.run_in_executor(thread, _fold_films_of, batch, partition, now, expiry.ttl_s,
                                            (films, viewers, hourly))
        films.store(folded.films)
        viewers.store(folded.viewers)
        hourly.store(folded.hours)
        if folded.latest_play is not None:
            newest_play = max(newest_play, folded.latest_play)
            mirror.set_trending(functools.partial(trending_at, newest_play))
        if expiry.due(partition, now):
            oldest = now - (TRENDING_EXPIRES + TRENDING_WINDOW).total_seconds()
            stale = expired_viewers(film_viewers.items(), partition, settings.topic_partitions,
                                    now - expiry.ttl_s)
            _sweep(viewers, stale, "viewer entries", partition)
            _sweep(hourly, [key for key in list(film_plays_hourly.data.keys())
                            if hours_of(key)[0] == partition and hours_of(key)[1] < oldest], "trending hours",
                   partition)
        changelog_acks.track(asyncio.gather(*[await changelog.send() for changelog in (viewers, films, hourly)]))

    try:
        with _fold_thread("film-fold") as thread:
            async for message in stream.events():
                await _completed(fold(message, thread))
                await _done(stream, message)
    finally:
        flusher.cancel()
        await _stop(producer)


if settings.stats_enabled:
    user_stats_agent = app.agent(user_batches_topic, name="user-stats")(fold_user_batches)
    film_stats_agent = app.agent(film_batches_topic, name="film-stats")(fold_film_batches)

    @app.task
    async def commit_when_idle() -> None:
        """Serve the agents' commit requests (app/commits.py `CommitSoon`)."""
        await commit_soon.run(app.consumer.commit, app.consumer.maybe_wait_for_commit_to_finish)
