"""Stats agents: rolling per-user and per-film statistics, trending, live mirrors.

- `user_stats_agent` reads `interactions` (keyed by user), folds each valid
  event into `tables.stats.user_stats`, mirrors the user's recent watches to
  Redis, and re-keys film actions (play/complete/rate) by film onto
  `film_actions_topic` (what `group_by(film_id)` would do, with a compact value).
- `film_stats_agent` reads that topic and folds into `film_stats`,
  `film_viewers` and the windowed `film_plays_window`, from which the mirror
  computes this worker's trending part at each flush after new plays.
Invalid events are skipped here; the loader dead-letters them.
The fold functions are pure so they can be tested with hand-built events.
"""
from __future__ import annotations

import asyncio
import functools
from typing import Any, Callable, Iterable

from app.events import Event, InvalidEvent, parse_event
from app.main import app, settings
from app.schema import NO_RATING, WATCH_EVENT_TYPES
from app.storage.redis_keys import RECENT_MAX
from app.topics import FilmAction, film_actions_topic, interactions_topic
from agents.live import LiveMirror, top_k
from tables.stats import film_plays_trailing, film_plays_window, film_stats, film_viewers, user_stats

FILM_ACTION_TYPES = frozenset({"play", "complete", "rate"})
# Batch window of the user agent: with the 0.5 s mirror flush, a new user's
# first plays reach Redis within about a second.
USER_BATCH_WITHIN_S = 0.5


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


def apply_film(stats: dict[str, Any] | None, action: FilmAction, new_viewer: bool) -> dict[str, Any]:
    """`stats` updated by one film action (a new dict)."""
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


async def fold_user_events(stream) -> None:
    """Fold events into per-user stats, mirror recent watches, re-key film actions.

    Batched: each user's row is written (one changelog message) once per batch
    instead of once per event. That is correct outside per-event iteration
    because `user_stats` places its changelog by key (`use_partitioner`), the
    same partition as the source message (tables/stats.py).
    """
    mirror = LiveMirror(settings)
    flusher = asyncio.ensure_future(mirror.run())
    try:
        async for batch in stream.take_events(settings.loader_batch_max, within=USER_BATCH_WITHIN_S):
            events = []
            for message in batch:
                try:
                    events.append(parse_event(message.value))
                except InvalidEvent:
                    continue
            for event in events:
                if event.event_type in FILM_ACTION_TYPES:
                    action = FilmAction(event.user_id, event.film_id, event.event_type, event.ts, event.rating)
                    await film_actions_topic.send(key=str(event.film_id).encode(), value=action.to_bytes())
            watched = {e.user_id for e in events if e.event_type in WATCH_EVENT_TYPES}
            for user_id, stats in fold_users(user_stats.get, events).items():
                user_stats[user_id] = stats
                if user_id in watched:
                    mirror.set_recent(user_id, stats["recent"])
    finally:
        flusher.cancel()


def trending_at(event) -> tuple[list[int], list[float]]:
    """Top films by plays in the last TRENDING_WINDOW (event time) up to `event`'s action."""
    return top_k(film_plays_trailing.items(event))


async def fold_film_actions(stream) -> None:
    """Fold film actions into per-film stats and windowed plays; publish trending ~1/s."""
    mirror = LiveMirror(settings)
    flusher = asyncio.ensure_future(mirror.run())
    try:
        async for raw in stream:
            action = FilmAction.from_bytes(raw)
            new_viewer = False
            if action.event_type == "play":
                pair = f"{action.film_id}:{action.user_id}"
                new_viewer = film_viewers.get(pair) is None
                if new_viewer:
                    film_viewers[pair] = True
                film_plays_window[action.film_id] += 1
            film_stats[action.film_id] = apply_film(film_stats.get(action.film_id), action, new_viewer)
            if action.event_type == "play":
                mirror.set_trending(functools.partial(trending_at, stream.current_event))
    finally:
        flusher.cancel()


if settings.stats_enabled:
    user_stats_agent = app.agent(interactions_topic, name="user-stats")(fold_user_events)
    film_stats_agent = app.agent(film_actions_topic, name="film-stats")(fold_film_actions)
