"""A finished online experiment in a test database, without a running service: for the
dashboard's browser test (and the screenshot in docs/).

A simulated month of history; ALS and Popular fitted on it (what two retrains would
publish); then a week of simulated days (app.simulator.days) whose users are shown, by their
arm's hash as serving does, Popular's lists (control, served) or ALS's (challenger); the
experiment is started and evaluated by the real code (app.experiments.operations, .rollout),
so it ends as the rollout policy decides, its decisions logged.
"""
from __future__ import annotations

import asyncio
from dataclasses import fields
from datetime import datetime, timedelta, timezone

import numpy as np
import redis

from app.events import Event
from app.experiments import operations, rollout, store
from app.experiments.assignment import CHALLENGER, arm_of
from app.experiments.model import Experiment, Guardrail
from app.recsys.data.dataset import Dataset, EventWeights, Interactions, build_dataset
from app.recsys.models.registry import ALSRecommender, PopularRecommender, Recommender
from app.schema import FILM_EVENT_TYPES
from app.settings import Settings
from app.simulate import generate
from app.simulator.days import DaySimulation, run_days
from app.simulator.live import Shown
from app.storage import redis_keys as keys
from app.storage.clickhouse import client
from app.storage.films import write_films
from app.storage.interactions import insert_events

USERS, FILMS, HISTORY_EVENTS, DAYS = 3_000, 400, 100_000, 7
START = datetime(2026, 3, 21, tzinfo=timezone.utc)  # history: the 30 days before; the experiment: 7 days after
END = START + timedelta(days=DAYS)
EXPERIMENT_ID = "exp-popular-vs-als"
CONTROL, CHALLENGER_VERSION = "20260320T030000Z-popular", "20260320T031500Z-als"
RANGE = ("2026-02-19", "2026-03-27")  # the dashboard's range: the month and the experiment's week


def _lists(model: Recommender, dataset: Dataset) -> dict[int, list[int]]:
    """Top-10 per known user, seen films left out (what a publish writes)."""
    ids, _ = model.recommend(np.arange(len(dataset.users)), 10, seen=dataset.matrix)
    films = dataset.items.to_external(ids)
    return {int(u): films[i].tolist() for i, u in enumerate(dataset.users.to_external(np.arange(len(dataset.users))))}


def _days(world: object, experiment: Experiment, shown: dict[str, dict[int, list[int]]], fallback: list[int]) -> list[Event]:
    async def fetch(user_id: int) -> Shown:
        arm = arm_of(experiment.hash_seed, experiment.threshold, user_id)
        version = experiment.challenger if arm == CHALLENGER else experiment.control
        return Shown(shown[version].get(user_id, fallback), "als", version)

    async def collect() -> list[Event]:
        sim = DaySimulation(world, seed=0, salt=1)  # type: ignore[arg-type]
        return [event async for day in run_days(sim, DAYS, END.timestamp(), fetch) for event in day]

    return asyncio.run(collect())


def finished_experiment(settings: Settings, r: redis.Redis) -> Experiment:
    """Write the month, run the week's experiment and evaluate it at its end; the experiment as stored."""
    world, history = generate(USERS, FILMS, HISTORY_EVENTS, seed=0, days=30, end_ts=START.timestamp())
    interactions = Interactions.from_columns({f.name: getattr(history, f.name) for f in fields(Interactions)})
    interactions = interactions.select(np.isin(history.event_type, sorted(FILM_EVENT_TYPES)) & (history.film_id != 0))
    dataset = build_dataset(interactions, EventWeights())
    popular = PopularRecommender().fit(dataset)
    shown = {CONTROL: _lists(popular, dataset), CHALLENGER_VERSION: _lists(ALSRecommender().fit(dataset), dataset)}
    fallback = dataset.items.to_external(popular.top(10)[0]).tolist()
    for version in (CHALLENGER_VERSION, CONTROL):  # both published (their lists live in `shown`), Popular served
        r.zadd(keys.VERSIONS, {version: 1.0})
        r.set(keys.meta(version), f'{{"version": "{version}"}}')
    r.set(keys.CURRENT, CONTROL)
    ch = client(settings)
    try:
        insert_events(ch, list(history))
        write_films(settings, world.catalog.rows())
        # D1 within 20 %: at ~1,000 users per arm its interval is about +-15 % (test_experiment_e2e)
        plan = operations.new_plan(CHALLENGER_VERSION, CONTROL, START, EXPERIMENT_ID, share=0.5,
                                   guardrails=(Guardrail("d1_retention", 0.2), Guardrail("ctr", 0.05)))
        running, _ = operations.start(ch, r, plan, min_users=500)
        insert_events(ch, _days(world, running, shown, fallback))
        rollout.evaluate(ch, r, END)
        return store.get(ch, EXPERIMENT_ID)
    finally:
        ch.disconnect()
