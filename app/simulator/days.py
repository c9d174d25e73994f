"""Simulated days of traffic that react to what the service shows: for online experiments.

Each simulated day, every user visits at most once, with a probability from
their activity that rises with their satisfaction: the film time they got out
of their recent visits (an average of the last visits, each counting for half
of what came before). A visit fetches the recommendations and is a live
session (`app.simulator.live.session`) dated inside that day with real
durations. So a model that shows what users want yields more clicks, plays and
watch time on the day, longer visits, and more users coming back the next days
(retention, time on site per user-day).

Pure function of (seed, salt, day, user): each user's visit draws from its
own generator, so the result does not depend on the order fetches complete.
Days are whole UTC days in the past, so nothing is dated in the future.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import AsyncIterator, Awaitable, Callable

import numpy as np

from app.events import Event
from app.simulator.history import HOURLY
from app.simulator.live import Shown, session
from app.simulator.world import World

DAY_S = 86_400
# Visits per user per day at average activity and neutral satisfaction.
MEAN_DAILY_VISITS = 0.3
# Satisfaction in [0, 1]: watching SATISFIED_S of film in a visit is full satisfaction.
SATISFIED_S = 5_400.0
START_SATISFACTION = 0.5
# The visit rate is scaled by (FLOOR + GAIN * satisfaction): 0.5x for an unsatisfied user, 1.5x for a satisfied one.
SATISFACTION_FLOOR, SATISFACTION_GAIN = 0.5, 1.0


@dataclass
class DaySimulation:
    """State of the simulated audience across days; `visitors` then `play` for each day."""

    world: World
    seed: int
    salt: int = 0  # a new salt gives new event ids for the same seed (another run in the same database)
    satisfaction: np.ndarray = field(init=False)
    _rate: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.world.audience)
        self.satisfaction = np.full(n, START_SATISFACTION)
        self._rate = np.clip(MEAN_DAILY_VISITS * n * self.world.audience.activity, 0.01, 3.0)

    def visitors(self, day_start: int) -> np.ndarray:
        """Indices of the users who visit on the day starting at `day_start` (epoch s, UTC midnight)."""
        rng = np.random.default_rng([self.seed, self.salt, day_start, 21])
        rate = self._rate * (SATISFACTION_FLOOR + SATISFACTION_GAIN * self.satisfaction)
        return np.flatnonzero(rng.random(len(rate)) < -np.expm1(-rate))

    def play(self, day_start: int, users: np.ndarray, shown: list[Shown]) -> list[Event]:
        """The visits of `users` (shown `shown[i]`), dated inside the day; updates satisfaction."""
        events: list[Event] = []
        for user_idx, answer in zip(users.tolist(), shown):
            user_id = int(self.world.audience.user_ids[user_idx])
            rng = np.random.default_rng([self.seed, self.salt, day_start, user_id, 22])
            start = day_start + _hour_of_visit(rng) * 3600 + float(rng.uniform(0, 3600))
            visit = session(self.world, rng, user_idx, answer, now=day_start + DAY_S, start=start)
            # a visit ends inside its day: one that would run past midnight starts earlier
            shift = min(0.0, day_start + DAY_S - 1 - (start + visit.length_s))
            shift = max(shift, day_start - start)
            events += [e._replace(ts=round(e.ts + shift, 3)) for e in visit.events] if shift else visit.events
            watched = min(visit.watched_s / SATISFIED_S, 1.0)
            self.satisfaction[user_idx] = 0.5 * self.satisfaction[user_idx] + 0.5 * watched
        return events


def _hour_of_visit(rng: np.random.Generator) -> int:
    return int(rng.choice(24, p=HOURLY / HOURLY.sum()))


def day_starts(days: int, end_ts: float) -> list[int]:
    """UTC midnights of the `days` whole days before the one containing `end_ts`."""
    last_midnight = int(end_ts // DAY_S) * DAY_S
    return [last_midnight - (days - d) * DAY_S for d in range(days)]


async def run_days(
    sim: DaySimulation,
    days: int,
    end_ts: float,
    fetch: Callable[[int], Awaitable[Shown]],
    concurrency: int = 8,
) -> AsyncIterator[list[Event]]:
    """Each simulated day's events, fetching every visitor's recommendations (user id ->
    `Shown`) with at most `concurrency` requests in flight."""
    limit = asyncio.Semaphore(concurrency)

    async def one(user_idx: int) -> Shown:
        async with limit:
            return await fetch(int(sim.world.audience.user_ids[user_idx]))

    for day_start in day_starts(days, end_ts):
        users = sim.visitors(day_start)
        shown = list(await asyncio.gather(*(one(u) for u in users.tolist())))
        yield sim.play(day_start, users, shown)
