"""Stats agents: rolling per-user and per-film statistics, trending, live mirrors.

Both read the loader's stats batches (agents/batches.py), one message per
loaded batch and partition, and fold the whole batch inside ONE stream
iteration (Faust's per-message cost is paid per batch, not per event):
- `user_stats_agent` reads `{APP_ID}-user-batches` (partition p = source
  partition p, keyed by user like `interactions`), folds the events into
  `tables.stats.user_stats` (one write per user per batch) and mirrors the
  users' recent watches to Redis;
- `film_stats_agent` reads `{APP_ID}-film-batches` (partition q = the films
  hashing to q) and folds into `film_stats`, `film_viewers` and the windowed
  `film_plays_window` (per film and hour bucket: one windowed write per
  bucket, not per play), from which the mirror computes this worker's
  trending part at each flush after new plays.
Table writes happen inside the iteration, so changelogs go to p / q, the
partition that owns the keys. The loader sends only valid events, each event_id
once per loaded batch.

Exactly once per source position: a stats batch is re-sent whenever the
loader re-reads `interactions` (a crash, a rebalance), and Faust re-delivers
stats batches after a worker crash. Every event carries its source partition
and offset; each user and film record keeps the last source offset applied
per source partition and skips events at or below it (`fold_users`,
`fold_films`; docs/ingestion.md explains why this is exact).

Per-user records and per-(film, user) viewer entries expire after
STATS_TTL_DAYS without a write (`Expiry`).
The fold functions are pure (and work on columns of a batch, ready to be
vectorised) so they can be tested with hand-built events.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import math
import operator
import time
from collections import Counter
from typing import Any, Callable, Iterable

from app.events import Event
from app.main import app, settings
from app.schema import NO_RATING, WATCH_EVENT_TYPES
from app.storage.redis_keys import RECENT_MAX
from app.topics import film_batches_topic, user_batches_topic
from agents import batches
from agents.live import LiveMirror, top_k
from tables.stats import (
    TRENDING_EXPIRES, TRENDING_STEP, TRENDING_WINDOW, EventTime, film_plays_trailing, film_plays_window, film_stats, film_viewers,
    user_stats,
)

log = logging.getLogger(__name__)


# Record fields for the fold itself (position in the current film, source marks, write time), not readers.
BOOKKEEPING = frozenset({"cur_film", "cur_pos", "src", "at"})


def new_user_stats() -> dict[str, Any]:
    return {"events": 0, "watch_seconds": 0.0, "completed": 0, "rating_sum": 0.0, "ratings": 0,
            "last_seen": 0.0, "recent": [], "cur_film": 0, "cur_pos": 0.0}


def apply_user(stats: dict[str, Any] | None, event: Event) -> dict[str, Any]:
    """`stats` updated by one event (a new dict; the input is not modified).

    Watch time: `watch_seconds` is the position reached, so time watched is
    the increase of position within the film being watched (a `play` starts
    it at 0). Recent films: most recent first, each film once, capped.
    """
    s = dict(stats) if stats else new_user_stats()
    s["events"] += 1
    s["last_seen"] = max(s["last_seen"], event.ts)
    if event.event_type in WATCH_EVENT_TYPES:
        if event.event_type == "play" or event.film_id != s["cur_film"]:
            s["cur_film"], s["cur_pos"] = event.film_id, 0.0
        if event.watch_seconds > s["cur_pos"]:
            s["watch_seconds"] += event.watch_seconds - s["cur_pos"]
            s["cur_pos"] = event.watch_seconds
        if not s["recent"] or s["recent"][0] != event.film_id:
            s["recent"] = [event.film_id, *(f for f in s["recent"] if f != event.film_id)][:RECENT_MAX]
    if event.event_type == "complete":
        s["completed"] += 1
    if event.event_type == "rate" and event.rating != NO_RATING:
        s["rating_sum"] += event.rating
        s["ratings"] += 1
    return s


def new_film_stats() -> dict[str, Any]:
    return {"views": 0, "viewers": 0, "completes": 0, "rating_sum": 0.0, "ratings": 0}


def apply_film(stats: dict[str, Any] | None, action: Event, new_viewer: bool) -> dict[str, Any]:
    """`stats` updated by one film action (play, complete, rate; a new dict)."""
    s = dict(stats) if stats else new_film_stats()
    if action.event_type == "play":
        s["views"] += 1
        s["viewers"] += int(new_viewer)
    elif action.event_type == "complete":
        s["completes"] += 1
    elif action.event_type == "rate":
        s["rating_sum"] += action.rating
        s["ratings"] += 1
    return s


def summary(stats: dict[str, Any]) -> dict[str, Any]:
    """Derived figures for readers: average rating, completion rate."""
    out = {k: v for k, v in stats.items() if k not in BOOKKEEPING}
    out["avg_rating"] = stats["rating_sum"] / stats["ratings"] if stats["ratings"] else None
    if "views" in stats:
        out["completion_rate"] = stats["completes"] / stats["views"] if stats["views"] else None
    return out


class _Marked:
    """Records being folded over one batch, each with its source marks ("src": the last
    source offset applied per source partition; str keys, as table values are JSON)."""

    def __init__(self, current: Callable[[int], dict[str, Any] | None], batch: batches.StatsBatch) -> None:
        self.current = current
        self.keys = {p: str(p) for p in set(batch.partitions)}
        self.records: dict[int, dict[str, Any] | None] = {}
        self.marks: dict[int, dict[str, int]] = {}
        self.stored: dict[int, dict[str, Any] | None] = {}  # as `current` gave them: never modified

    def start(self, key: int) -> tuple[dict[str, Any] | None, dict[str, int]]:
        """(the record as folded so far, its marks), from `current` the first time."""
        if key in self.marks:
            return self.records[key], self.marks[key]
        state = self.records[key] = self.stored[key] = self.current(key)
        mark = self.marks[key] = dict(state["src"]) if state and "src" in state else {}
        return state, mark

    def results(self, new: Callable[[], dict[str, Any]], **fields: Any) -> dict[int, dict[str, Any]]:
        """Every record with its marks and `fields` set. The folds' own dicts are updated in
        place (copying every record again cost a fifth of the fold); stored ones are copied."""
        out = {}
        for key, state in self.records.items():
            if state is None:
                state = new()
            elif state is self.stored[key]:
                state = dict(state)
            state["src"] = self.marks[key]
            state.update(fields)
            out[key] = state
        return out


def fold_users(
    current: Callable[[int], dict[str, Any] | None], batch: batches.StatsBatch, now: float
) -> dict[int, dict[str, Any]]:
    """New record of every user in `batch` (events in order), starting from `current(user_id)`.

    Exactly once per source position: a record keeps in "src" the last source
    offset applied per source partition, and an event at or below it was
    applied before (a re-delivered batch) and is skipped. Mark and stats are
    one record, so one changelog write: no crash can separate them. Every
    user of the batch is written (stamped "at" = `now`, wall clock, for
    expiry), even one whose events were all skipped: that re-sends a value a
    crash may have kept from the changelog.
    """
    fold = _Marked(current, batch)
    keys, records = fold.keys, fold.records
    for event, partition, offset in batch.rows():
        state, mark = fold.start(event.user_id)
        key = keys[partition]
        if offset <= mark.get(key, -1):
            continue
        records[event.user_id] = apply_user(state, event)
        mark[key] = offset
    return fold.results(new_user_stats, at=now)


def _stamp(value: Any) -> tuple[int, int, float]:
    """A viewer entry as (source partition, source offset of the play that made it, written at)."""
    if isinstance(value, list) and len(value) == 3:
        return value[0], value[1], value[2]
    return -1, -1, 0.0  # unknown origin (written by an older version): expires at the next sweep


def fold_films(
    current: Callable[[int], dict[str, Any] | None], viewer: Callable[[str], Any], batch: batches.StatsBatch,
    now: float, refresh_before: float,
) -> tuple[dict[int, dict[str, Any]], dict[str, list], list[Event]]:
    """(new record of every film in `batch`, viewer entries to write, the actions applied now).

    Exactly once per source position, as `fold_users`, with marks per film
    (a film batch mixes source partitions; per partition, offsets still come
    in order). Unique viewers: `film_viewers["film:user"]` = [partition,
    offset, written at] of the play that made the user a viewer. A play
    counts a new viewer when there is no entry, or when the entry is its own
    (the entry's write survived a crash that lost the film record's). A
    play applied before re-writes its entry (in case that write was lost),
    and an entry older than `refresh_before` is re-stamped so that regular
    viewers do not expire.
    """
    fold = _Marked(current, batch)
    keys, records = fold.keys, fold.records
    viewers: dict[str, list] = {}
    applied: list[Event] = []
    for action, partition, offset in batch.rows():
        film = action.film_id
        state, mark = fold.start(film)
        key = keys[partition]
        new = offset > mark.get(key, -1)
        new_viewer = False
        if action.event_type == "play":
            pair = f"{film}:{action.user_id}"
            entry = viewers[pair] if pair in viewers else viewer(pair)
            if not new:
                if pair not in viewers:
                    viewers[pair] = entry if entry is not None else [partition, offset, now]
                continue
            stamp = _stamp(entry)
            new_viewer = entry is None or stamp[:2] == (partition, offset)
            if new_viewer:
                viewers[pair] = [partition, offset, now]
            elif stamp[2] < refresh_before:
                viewers[pair] = [stamp[0], stamp[1], now]
        elif not new:
            continue
        records[film] = apply_film(state, action, new_viewer)
        mark[key] = offset
        applied.append(action)
    return fold.results(new_film_stats), viewers, applied


def expired_users(
    records: Iterable[tuple[int, dict[str, Any]]], partition: int, before: float
) -> list[int]:
    """Users of source `partition` whose record was last written before `before`."""
    key = str(partition)
    return [user_id for user_id, record in records
            if record.get("at", before) < before and key in record.get("src", ())]


def expired_viewers(
    entries: Iterable[tuple[str, Any]], partition: int, partitions: int, before: float
) -> list[str]:
    """Viewer entries of films on film `partition` last stamped before `before`."""
    return [pair for pair, entry in entries
            if _stamp(entry)[2] < before
            and batches.film_partition(int(pair.split(":", 1)[0]), partitions) == partition]


def play_buckets(actions: Iterable[Event], since: float) -> Counter:
    """Plays per (film, start of their TRENDING_STEP bucket), plays before `since` left out.

    All plays of one bucket fall into the same hopping windows (windows start
    on step boundaries), so adding the bucket's count once is exact.
    """
    step = TRENDING_STEP.total_seconds()
    return Counter((a.film_id, a.ts - a.ts % step) for a in actions if a.event_type == "play" and a.ts >= since)


def _decoded(raw: bytes, what: str) -> batches.StatsBatch:
    """A stats batch; a corrupt message is logged and skipped (it never blocks the stream)."""
    try:
        return batches.decode(raw)
    except batches.InvalidBatch as exc:
        log.error("skipping a corrupt %s message: %s", what, exc)
        return batches.StatsBatch()


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


def _sweep(table, keys: list, what: str, partition: int) -> None:
    for key in keys:
        del table[key]
    if keys:
        log.info("expired %d %s of partition %d (no write for STATS_TTL_DAYS=%g)",
                 len(keys), what, partition, settings.stats_ttl_days)


async def fold_user_batches(stream) -> None:
    """Fold each user batch into per-user stats (one table write per user) and mirror recent watches.

    A user's recent list goes to Redis only when it changed (most watch events
    are `progress` on the film already in front): the mirror's Redis commands
    were the largest cost of the stats path.
    """
    mirror = LiveMirror(settings)
    flusher = asyncio.ensure_future(mirror.run())
    expiry = _expiry()
    try:
        async for message in stream.events():
            now, partition = time.time(), message.message.partition
            batch = _decoded(message.value, "user batch")
            for user_id, stats in fold_users(user_stats.get, batch, now).items():
                before = user_stats.get(user_id)
                user_stats[user_id] = stats
                if stats["recent"] and (before is None or before["recent"] != stats["recent"]):
                    mirror.set_recent(user_id, stats["recent"], stats)
            if expiry.due(partition, now):
                _sweep(user_stats, expired_users(user_stats.items(), partition, now - expiry.ttl_s), "users",
                       partition)
    finally:
        flusher.cancel()


def trending_at(ts: float) -> tuple[list[int], list[float]]:
    """Top films by plays in the last TRENDING_WINDOW (event time) up to `ts`."""
    return top_k(film_plays_trailing.items(EventTime(ts)))


async def fold_film_batches(stream) -> None:
    """Fold each film batch into per-film stats, viewers and windowed plays; publish trending ~1/s.

    Only the plays applied now (not re-deliveries) are windowed. Plays whose
    every window has already expired (older than TRENDING_EXPIRES +
    TRENDING_WINDOW, wall clock) are not windowed: the windows would be
    dropped at the next cleanup, and replays of old history would write
    changelog entries for nothing.
    """
    mirror = LiveMirror(settings)
    flusher = asyncio.ensure_future(mirror.run())
    expiry = _expiry()
    try:
        async for message in stream.events():
            now, partition = time.time(), message.message.partition
            batch = _decoded(message.value, "film batch")
            folded, viewers, applied = fold_films(
                film_stats.get, film_viewers.get, batch, now, refresh_before=now - expiry.ttl_s / 2)
            for pair, entry in viewers.items():
                film_viewers[pair] = entry
            for film_id, stats in folded.items():
                film_stats[film_id] = stats
            buckets = play_buckets(applied, since=now - (TRENDING_EXPIRES + TRENDING_WINDOW).total_seconds())
            for (film_id, bucket), plays in buckets.items():
                film_plays_window[film_id].apply(operator.add, plays, EventTime(bucket))
            if buckets:
                latest = max(a.ts for a in applied if a.event_type == "play")
                mirror.set_trending(functools.partial(trending_at, latest))
            if expiry.due(partition, now):
                stale = expired_viewers(film_viewers.items(), partition, settings.topic_partitions,
                                        now - expiry.ttl_s)
                _sweep(film_viewers, stale, "viewer entries", partition)
    finally:
        flusher.cancel()


if settings.stats_enabled:
    user_stats_agent = app.agent(user_batches_topic, name="user-stats")(fold_user_batches)
    film_stats_agent = app.agent(film_batches_topic, name="film-stats")(fold_film_batches)
