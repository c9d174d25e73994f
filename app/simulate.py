"""Traffic simulator of the online cinema: a pure fast generator and a Kafka runner.

`generate(...)` builds the world (catalog + users with planted tastes, see
app.simulator.world) and a history of sessions (app.simulator.history) as
numpy columns: deterministic for (seed, end_ts), a million events in a few
seconds, used by tests and benchmarks. `run(...)` writes the catalog into
ClickHouse `films` (idempotent), makes sure the topics exist and produces the
history to Kafka, optionally paced and with a share of malformed messages.
Simulated user and film ids start at 1; do not mix a simulated run with a
MovieLens import in the same database.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import AsyncIterator

import numpy as np

from app.producer import Message, produce_messages, to_message
from app.settings import Settings
from app.simulator import wire
from app.simulator.history import EventColumns, generate_events
from app.simulator.days import DaySimulation, run_days
from app.simulator.live import LiveStats, RecommendationClient, fetch_shown, next_session
from app.simulator.world import World, build_world
from app.storage.films import write_films
from app.storage.kafka_admin import ensure_topics

log = logging.getLogger(__name__)

DAY_S = 86_400.0


def generate(
    users: int, films: int, events: int, seed: int = 0, days: float = 30.0, end_ts: float | None = None
) -> tuple[World, EventColumns]:
    """The world and `events` events over the `days` before `end_ts` (default now).

    Event ids are drawn from (seed, end_ts): the same call gives the same ids
    (idempotent re-delivery), a later run of the same seed gives new events.
    """
    if days <= 0:
        raise ValueError(f"days must be > 0, got {days}")
    end = time.time() if end_ts is None else float(end_ts)
    world = build_world(users, films, seed, end - days * DAY_S, end)
    history = generate_events(
        world, events, np.random.default_rng([seed, 2]), np.random.default_rng([seed, int(end), 5])
    )
    return world, history


@dataclass(frozen=True)
class RunSummary:
    films_written: int
    messages_sent: int
    bad_messages: int
    seconds: float
    live_sessions: int = 0
    failed_fetches: int = 0


async def _live_messages(
    world: World, seed: int, n_events: int, recs: RecommendationClient, stats: LiveStats
) -> AsyncIterator[Message]:
    """Messages of live sessions until `n_events` (the last session cut)."""
    rng = np.random.default_rng([seed, time.time_ns(), 6])
    left = n_events
    while left > 0:
        session = (await next_session(world, rng, recs, stats))[:left]
        left -= len(session)
        for event in session:
            yield to_message(event)


async def _day_messages(
    world: World, seed: int, days: int, end_ts: float, n_events: int, recs: RecommendationClient, stats: LiveStats
) -> AsyncIterator[Message]:
    """Messages of `days` simulated past days whose visitors are shown the service's
    recommendations (app.simulator.days), until `n_events` (the last day cut)."""
    sim = DaySimulation(world, seed, salt=int(end_ts))  # a later run gets new event ids
    left = n_events
    async for events in run_days(sim, days, end_ts, lambda user_id: fetch_shown(recs, user_id, stats)):
        for event in events[:left]:
            yield to_message(event)
        left -= len(events)
        if left <= 0:
            break


async def run(
    settings: Settings,
    users: int,
    films: int,
    events: int,
    seed: int = 0,
    days: float = 30.0,
    rate: float = 0.0,
    bad_fraction: float = 0.0,
    end_ts: float | None = None,
    progress: bool = True,
    service_url: str | None = None,
    live_days: int = 0,
) -> RunSummary:
    """Write the catalog to ClickHouse and produce events to Kafka.

    Without `service_url`: the history of the last `days`. With it: live
    sessions now, shown the service's recommendations (app.simulator.live);
    with `live_days` too, the `live_days` whole days before today instead, each
    user visiting more often the more they liked what they were shown
    (app.simulator.days: what online experiments need).
    `rate` > 0 paces production to that many messages per second (0 = as fast
    as the broker takes them).
    """
    if rate < 0:  # arguments are checked before the catalog is written
        raise ValueError(f"rate must be >= 0 events/s, got {rate}")
    if service_url and bad_fraction:
        raise ValueError("malformed messages (bad fraction) are only simulated for the history, not live")
    if live_days and not service_url:
        raise ValueError("live days need a service to show recommendations (service_url)")
    started = time.monotonic()
    world, history = generate(users, films, 0 if service_url else events, seed, days, end_ts)
    bad = len(wire.bad_positions(len(history), bad_fraction, seed))
    n_films = await asyncio.to_thread(write_films, settings, world.catalog.rows())
    log.info("wrote %d films to ClickHouse %s.films", n_films, settings.clickhouse_database)
    await ensure_topics(settings)
    stats = LiveStats()
    if service_url:
        async with RecommendationClient(service_url, settings.network_timeout_s) as recs:
            if live_days:
                messages = _day_messages(world, seed, live_days, time.time() if end_ts is None else end_ts,
                                         events, recs, stats)
            else:
                messages = _live_messages(world, seed, events, recs, stats)
            sent = await produce_messages(settings, messages, events, rate, progress, desc="live")
        log.info("%d live sessions, %d failed recommendation fetches", stats.sessions, stats.failed_fetches)
    else:
        messages = wire.messages(iter(history), len(history), bad_fraction, seed)
        sent = await produce_messages(settings, messages, len(history), rate, progress)
    log.info("produced %d messages (%d malformed) to %s", sent, bad, settings.topic_interactions)
    return RunSummary(n_films, sent, bad, time.monotonic() - started, stats.sessions, stats.failed_fetches)
