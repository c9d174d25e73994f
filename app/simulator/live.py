"""Online feedback loop: simulated sessions that are shown the service's real recommendations.

Each live session fetches `GET {url}/v1/users/{id}/recommendations?limit=10`,
emits one impression per returned film (with the answer's `source`,
`model_version` and the film's `position`), and clicks a shown film with a
probability rising with its taste match (and falling with its position);
clicks and the plays they lead to carry the same attribution, so online CTR
and play rate per model version can be measured. Some sessions also watch a
film found on their own (no attribution), as in the history.

Time is compressed: a live session, film watching included, is dated within
the last second, so no event is ever in the future.
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


def click_probability(affinity: np.ndarray, position: np.ndarray) -> np.ndarray:
    """Clicks rise with taste match and fall with the position in the list."""
    return (0.03 + 0.6 * affinity) / (1.0 + 0.2 * position)


def live_session(world: World, rng: np.random.Generator, user_idx: int, shown: Shown, now: float) -> list[Event]:
    """The events of one session that was shown `shown`, dated just before `now`."""
    user_id = int(world.audience.user_ids[user_idx])
    films = np.array([f for f in shown.film_ids if 1 <= f <= len(world.catalog)], dtype=np.int64) - 1
    shown_at = np.array([i for i, f in enumerate(shown.film_ids) if 1 <= f <= len(world.catalog)], dtype=np.int64)
    rows: list[tuple] = [("page_view", None, {})]
    attribution = {"source": shown.source, "model_version": shown.model_version}
    rows += [("impression", f, {**attribution, "position": int(p)}) for f, p in zip(films, shown_at)]
    aff = world.affinity(np.full(len(films), user_idx), films)
    clicked = rng.random(len(films)) < click_probability(aff, shown_at)
    watched = [(int(f), {**attribution, "position": int(p)}) for f, p in zip(films[clicked], shown_at[clicked])]
    if rng.random() < ORGANIC_SHARE:
        watched.append((int(choose_films(world, rng, np.array([user_idx]), np.array([now]))[0]), {}))
    for film, attr in watched:
        rows += _engagement(world, rng, user_idx, film, attr)
    ids = uuid4_strings(rng, len(rows) + 1).tolist()
    session_id, start = ids.pop(), np.floor(now * 1000) / 1000 - len(rows) * _STEP_S
    return [
        Event(ids[i], user_id, 0 if film is None else int(world.catalog.film_ids[film]), kind,
              round(start + (i + 1) * _STEP_S, 3), session_id, **fields)
        for i, (kind, film, fields) in enumerate(rows)
    ]


def _engagement(world: World, rng: np.random.Generator, user_idx: int, film: int, attr: dict) -> list[tuple]:
    """Click, then maybe play, the position reached or complete, and a rating."""
    aff = world.affinity(np.array([user_idx]), np.array([film]))
    duration = float(world.catalog.duration_s[film])
    rows: list[tuple] = [("page_view", film, {}), ("click", film, attr)]
    if rng.random() >= play_probability(aff)[0]:
        return rows + ([("watchlist_add", film, {})] if rng.random() < 0.25 else [])
    rows.append(("play", film, {**attr, "duration_seconds": duration}))
    if rng.random() < complete_probability(aff)[0]:
        rows.append(("complete", film, {"watch_seconds": duration, "duration_seconds": duration}))
        rate_chance = 0.4
    else:
        reached = float(round(rng.uniform(0.03, 0.9) * duration))
        rows.append(("progress", film, {"watch_seconds": reached, "duration_seconds": duration}))
        rate_chance = 0.1
    if rng.random() < rate_chance:
        rows.append(("rate", film, {"rating": float(draw_ratings(rng, aff)[0])}))
    return rows


@dataclass
class LiveStats:
    sessions: int = 0
    failed_fetches: int = 0


async def next_session(
    world: World, rng: np.random.Generator, recs: RecommendationClient, stats: LiveStats
) -> list[Event]:
    """One live session of a user drawn by activity; a failed fetch shows nothing.

    The first fetch must succeed (a wrong --service-url should stop the run at
    once); later failures are counted and logged, and the session goes on.
    """
    user_idx = int(pick(rng, np.cumsum(world.audience.activity), 1)[0])
    try:
        shown = await recs.recommendations(int(world.audience.user_ids[user_idx]))
    except LiveError:
        if stats.sessions == 0:
            raise
        stats.failed_fetches += 1
        if stats.failed_fetches % 100 == 1:
            log.warning("recommendation fetches failing (%d so far)", stats.failed_fetches, exc_info=True)
        shown = Shown([], "", "")
    stats.sessions += 1
    return live_session(world, rng, user_idx, shown, time.time())
