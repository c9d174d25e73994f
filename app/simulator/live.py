"""Online feedback loop: simulated sessions that are shown the service's real recommendations.

Each live session fetches `GET {url}/v1/users/{id}/recommendations?limit=10`,
emits one impression per returned film (with the answer's `source`,
`model_version` and the film's `position`), and clicks a shown film with a
probability rising with its true appeal to the user (`World.true_appeal`: the
planted taste and popularity the history is drawn from) and falling with its
position; a clicked film is played, finished and rated more often the better
it matches the user's taste. Clicks and the plays they lead to carry the same
attribution, so online CTR and play rate per model version can be measured.
Some sessions also watch a film found on their own (no attribution), as in
the history. So a model that shows what users want gets more clicks, plays
and watch time.

Time: in real-time live mode a session, film watching included, is compressed
into the last second, so no event is ever in the future; `session(start=...)`
dates it with real durations instead (app.simulator.days).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from types import TracebackType

import aiohttp
import numpy as np

from app.events import Event
from app.simulator.history import (
    BROWSE_AFTER_S,
    BROWSE_BEFORE_S,
    choose_films,
    complete_probability,
    draw_ratings,
    pick,
    play_probability,
    uuid4_strings,
)
from app.simulator.world import World

log = logging.getLogger(__name__)

LIMIT = 10
ORGANIC_SHARE = 0.3
_STEP_S = 0.001


class LiveError(RuntimeError):
    """The recommendation service did not give a usable answer."""


@dataclass(frozen=True)
class Shown:
    """What the service answered: films in display order and where they came from."""

    film_ids: list[int]
    source: str
    model_version: str


class RecommendationClient:
    """Async context manager around one aiohttp session with a total timeout per request."""

    def __init__(self, base_url: str, timeout_s: float) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> "RecommendationClient":
        self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()

    async def recommendations(self, user_id: int, limit: int = LIMIT) -> Shown:
        url = f"{self.base_url}/v1/users/{user_id}/recommendations"
        if self._session is None:
            raise RuntimeError("use `async with RecommendationClient(...)`")
        try:
            async with self._session.get(url, params={"limit": str(limit)}) as response:
                if response.status != 200:
                    raise LiveError(f"GET {url} answered {response.status}: {(await response.text())[:200]}")
                body = await response.json()
            return Shown(
                film_ids=[int(item["film_id"]) for item in body["items"]],
                source=str(body.get("source") or ""),
                model_version=str(body.get("model_version") or ""),
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise LiveError(f"GET {url} failed: {exc!r}") from None
        except (KeyError, TypeError, ValueError) as exc:
            raise LiveError(f"GET {url} gave an unexpected body: {exc!r}") from None


# A shown film is clicked with a chance rising with its true appeal to the user
# (saturating: CLICK_MAX for an irresistible film, half of it at CLICK_HALF_APPEAL
# times an average film's appeal) and falling with its position in the list.
CLICK_MAX = 0.35
CLICK_HALF_APPEAL = 20.0


def click_probability(appeal: np.ndarray, position: np.ndarray) -> np.ndarray:
    """Clicks rise with the film's true appeal to the user and fall with the position in the list."""
    return CLICK_MAX * appeal / (appeal + CLICK_HALF_APPEAL) / (1.0 + 0.2 * position)


@dataclass(frozen=True)
class Session:
    events: list[Event]
    watched_s: float  # film time watched (positions reached): what the user got out of the visit
    length_s: float  # first to last event, in real durations


def session(world: World, rng: np.random.Generator, user_idx: int, shown: Shown, now: float,
            start: float | None = None) -> Session:
    """One visit that was shown `shown`.

    With `start`, events are dated from it with real durations (browsing, the
    film itself); without, the whole visit is compressed into the millisecond
    steps just before `now` (real-time live mode: nothing may be in the future).
    """
    user_id = int(world.audience.user_ids[user_idx])
    known = [(f - 1, i) for i, f in enumerate(shown.film_ids) if 1 <= f <= len(world.catalog)]
    films = np.array([f for f, _ in known], dtype=np.int64)
    shown_at = np.array([i for _, i in known], dtype=np.int64)
    rows: list[tuple] = [("page_view", None, {}, 0.0)]
    attribution = {"source": shown.source, "model_version": shown.model_version}
    rows += [("impression", f, {**attribution, "position": int(p)}, 1.0) for f, p in zip(films, shown_at)]
    at = now if start is None else start
    appeal = world.true_appeal(np.full(len(films), user_idx), films, np.full(len(films), at))
    clicked = rng.random(len(films)) < click_probability(appeal, shown_at)
    watched = [(int(f), {**attribution, "position": int(p)}) for f, p in zip(films[clicked], shown_at[clicked])]
    if rng.random() < ORGANIC_SHARE:
        watched.append((int(choose_films(world, rng, np.array([user_idx]), np.array([at]))[0]), {}))
    cursor, watched_s = 10.0, 0.0
    for film, attr in watched:
        more, cursor, seconds = _engagement(world, rng, user_idx, film, attr, cursor)
        rows += more
        watched_s += seconds
    ids = uuid4_strings(rng, len(rows) + 1).tolist()
    session_id = ids.pop()
    if start is None:
        first = np.floor(now * 1000) / 1000 - len(rows) * _STEP_S
        stamps = [round(first + (i + 1) * _STEP_S, 3) for i in range(len(rows))]
    else:
        stamps = [round(start + row[3], 3) for row in rows]
    events = [
        Event(ids[i], user_id, 0 if film is None else int(world.catalog.film_ids[film]), kind, stamps[i], session_id,
              **fields)
        for i, (kind, film, fields, _) in enumerate(rows)
    ]
    return Session(events, watched_s, stamps[-1] - stamps[0])


def live_session(world: World, rng: np.random.Generator, user_idx: int, shown: Shown, now: float) -> list[Event]:
    """The events of one session that was shown `shown`, dated just before `now`."""
    return session(world, rng, user_idx, shown, now).events


def _engagement(world: World, rng: np.random.Generator, user_idx: int, film: int, attr: dict,
                t: float) -> tuple[list[tuple], float, float]:
    """Film page and click at `t`, then maybe play, the position reached or complete, and a
    rating. Returns the rows (with their offsets), when the next engagement starts, and the
    film time watched."""
    aff = world.affinity(np.array([user_idx]), np.array([film]))
    duration = float(world.catalog.duration_s[film])
    rows: list[tuple] = [("page_view", film, {}, t), ("click", film, attr, t + 20.0)]
    if rng.random() >= play_probability(aff)[0]:
        listed = [("watchlist_add", film, {}, t + 40.0)] if rng.random() < 0.25 else []
        return rows + listed, t + BROWSE_BEFORE_S, 0.0
    play_at = t + BROWSE_BEFORE_S
    rows.append(("play", film, {**attr, "duration_seconds": duration}, play_at))
    if rng.random() < complete_probability(aff)[0]:
        reached, rate_chance = duration, 0.4
        rows.append(("complete", film, {"watch_seconds": duration, "duration_seconds": duration}, play_at + reached))
    else:
        reached, rate_chance = float(round(rng.uniform(0.03, 0.9) * duration)), 0.1
        rows.append(("progress", film, {"watch_seconds": reached, "duration_seconds": duration}, play_at + reached))
    if rng.random() < rate_chance:
        rows.append(("rate", film, {"rating": float(draw_ratings(rng, aff)[0])}, play_at + reached + 60.0))
    return rows, play_at + reached + BROWSE_AFTER_S, reached


@dataclass
class LiveStats:
    sessions: int = 0
    failed_fetches: int = 0


async def fetch_shown(recs: RecommendationClient, user_id: int, stats: LiveStats) -> Shown:
    """The recommendations shown to a user; a failed fetch shows nothing.

    The first fetch must succeed (a wrong --service-url should stop the run at
    once); later failures are counted and logged, and the session goes on.
    """
    try:
        shown = await recs.recommendations(user_id)
    except LiveError:
        if stats.sessions == 0:
            raise
        stats.failed_fetches += 1
        if stats.failed_fetches % 100 == 1:
            log.warning("recommendation fetches failing (%d so far)", stats.failed_fetches, exc_info=True)
        shown = Shown([], "", "")
    stats.sessions += 1
    return shown


async def next_session(
    world: World, rng: np.random.Generator, recs: RecommendationClient, stats: LiveStats
) -> list[Event]:
    """One live session, now, of a user drawn by activity."""
    user_idx = int(pick(rng, np.cumsum(world.audience.activity), 1)[0])
    shown = await fetch_shown(recs, int(world.audience.user_ids[user_idx]), stats)
    return live_session(world, rng, user_idx, shown, time.time())
