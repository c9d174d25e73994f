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
partition that owns the keys. The loader sends only valid events.
The fold functions are pure so they can be tested with hand-built events.
"""
from __future__ import annotations

import asyncio
import functools
import logging
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
    out = {k: v for k, v in stats.items() if k not in ("cur_film", "cur_pos")}
    out["avg_rating"] = stats["rating_sum"] / stats["ratings"] if stats["ratings"] else None
    if "views" in stats:
        out["completion_rate"] = stats["completes"] / stats["views"] if stats["views"] else None
    return out


def fold_users(
    current: Callable[[int], dict[str, Any] | None], events: Iterable[Event]
) -> dict[int, dict[str, Any]]:
    """New stats of every user in `events` (in order), starting from `current(user_id)`."""
    folded: dict[int, dict[str, Any]] = {}
    for event in events:
        user_id = event.user_id
        folded[user_id] = apply_user(folded[user_id] if user_id in folded else current(user_id), event)
    return folded


def fold_films(
    current: Callable[[int], dict[str, Any] | None], is_viewer: Callable[[str], bool], actions: Iterable[Event]
) -> tuple[dict[int, dict[str, Any]], list[str]]:
    """(new stats of every film in `actions`, new "film:user" viewer pairs), in order,
    starting from `current(film_id)` and the viewer set `is_viewer(pair)`."""
    folded: dict[int, dict[str, Any]] = {}
    new_viewers: dict[str, None] = {}
    for action in actions:
        new_viewer = False
        if action.event_type == "play":
            pair = f"{action.film_id}:{action.user_id}"
            new_viewer = pair not in new_viewers and not is_viewer(pair)
            if new_viewer:
                new_viewers[pair] = None
        film = action.film_id
        folded[film] = apply_film(folded[film] if film in folded else current(film), action, new_viewer)
    return folded, list(new_viewers)


def play_buckets(actions: Iterable[Event], since: float) -> Counter:
    """Plays per (film, start of their TRENDING_STEP bucket), plays before `since` left out.

    All plays of one bucket fall into the same hopping windows (windows start
    on step boundaries), so adding the bucket's count once is exact.
    """
    step = TRENDING_STEP.total_seconds()
    return Counter((a.film_id, a.ts - a.ts % step) for a in actions if a.event_type == "play" and a.ts >= since)


def _decoded(raw: bytes, what: str) -> list[Event]:
    """A stats batch's events; a corrupt message is logged and skipped (it never blocks the stream)."""
    try:
        return batches.decode(raw)
    except batches.InvalidBatch as exc:
        log.error("skipping a corrupt %s message: %s", what, exc)
        return []


async def fold_user_batches(stream) -> None:
    """Fold each user batch into per-user stats (one table write per user) and mirror recent watches.

    A user's recent list goes to Redis only when it changed (most watch events
    are `progress` on the film already in front): the mirror's Redis commands
    were the largest cost of the stats path.
    """
    mirror = LiveMirror(settings)
    flusher = asyncio.ensure_future(mirror.run())
    try:
        async for raw in stream:
            events = _decoded(raw, "user batch")
            for user_id, stats in fold_users(user_stats.get, events).items():
                before = user_stats.get(user_id)
                user_stats[user_id] = stats
                if stats["recent"] and (before is None or before["recent"] != stats["recent"]):
                    mirror.set_recent(user_id, stats["recent"])
    finally:
        flusher.cancel()


def trending_at(ts: float) -> tuple[list[int], list[float]]:
    """Top films by plays in the last TRENDING_WINDOW (event time) up to `ts`."""
    return top_k(film_plays_trailing.items(EventTime(ts)))


async def fold_film_batches(stream) -> None:
    """Fold each film batch into per-film stats, viewers and windowed plays; publish trending ~1/s.

    Plays whose every window has already expired (older than TRENDING_EXPIRES
    + TRENDING_WINDOW, wall clock) are not windowed: the windows would be
    dropped at the next cleanup, and replays of old history would write
    changelog entries for nothing.
    """
    mirror = LiveMirror(settings)
    flusher = asyncio.ensure_future(mirror.run())
    try:
        async for raw in stream:
            actions = _decoded(raw, "film batch")
            folded, new_viewers = fold_films(film_stats.get, lambda pair: film_viewers.get(pair) is not None, actions)
            for pair in new_viewers:
                film_viewers[pair] = True
            for film_id, stats in folded.items():
                film_stats[film_id] = stats
            buckets = play_buckets(actions, since=time.time() - (TRENDING_EXPIRES + TRENDING_WINDOW).total_seconds())
            for (film_id, bucket), plays in buckets.items():
                film_plays_window[film_id].apply(operator.add, plays, EventTime(bucket))
            if buckets:
                latest = max(a.ts for a in actions if a.event_type == "play")
                mirror.set_trending(functools.partial(trending_at, latest))
    finally:
        flusher.cancel()


if settings.stats_enabled:
    user_stats_agent = app.agent(user_batches_topic, name="user-stats")(fold_user_batches)
    film_stats_agent = app.agent(film_batches_topic, name="film-stats")(fold_film_batches)
