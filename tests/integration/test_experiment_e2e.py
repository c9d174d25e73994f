"""Online experiments end to end on the real services, with simulated users who react to what
they are shown (app.simulator.days): ALS against Popular must end `control wins`, the reverse
`challenger wins` (and the rollout promotes it), and an A/A experiment must find no winner
with a passing sample-ratio check.

One module-wide set-up (a ClickHouse database, topics, Redis db 14, and a `cinerec worker`
that loads events and serves recommendations with the stats agents off, so what users are
shown depends only on the published versions and the arms): a simulated month of history,
ALS trained and served, Popular published as its own version without the switch (as an
operator would: `cinerec train --model popular --force --no-switch`). Each test then starts
its experiment at the first of its own simulated past days, waits until serving follows it,
simulates the days through the worker's HTTP API and Kafka, waits until every event is in
ClickHouse, and evaluates as the periodic task does, as of the end of those days.
Deterministic: fixed seeds and dates.
"""
from __future__ import annotations

import asyncio
import json
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import pytest
import redis
from clickhouse_driver import Client

from app.experiments import operations, rollout, store
from app.experiments.model import DEFAULT_GUARDRAILS, Action, Experiment, Guardrail, State
from app.localstack import proc
from app.recsys.training import pipeline, publish
from app.settings import Settings
from app.simulate import generate, run as simulate
from app.storage.clickhouse import client, migrate
from app.storage.films import write_films
from app.storage.interactions import count_visible, insert_events
from app.storage.kafka_admin import drop_topics
from app.worker_process import WorkerProcess
from tests.conftest import BASE, require_service, unique
from tests.integration.web_support import sync_redis

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REDIS_DB = 14
USERS, FILMS, HISTORY_EVENTS = 6_000, 800, 200_000
SEED = 0
HISTORY_END = datetime(2026, 10, 1, tzinfo=timezone.utc)  # a month of history before it
MIN_USERS = 1_000  # planned minimum per arm; each test's days bring ~1,500 or more per arm
DEADLINE_S = 300.0  # generous: the machine may be shared; the waits end on state, not time
REPLICATES = 1_000


@dataclass(frozen=True)
class Env:
    settings: Settings
    url: str  # the worker's web port
    als: str  # served at the start
    popular: str  # published, not served


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    for service in ("clickhouse", "redis", "kafka"):
        require_service(service)
    suffix = unique("e2e")
    settings = BASE.with_clickhouse_database(f"cinerec_test_{suffix}").with_redis_db(REDIS_DB).with_overrides(
        topic_interactions=f"interactions-{suffix}", topic_dlq=f"interactions-dlq-{suffix}",
        app_id=f"cinerec-test-{suffix}", model_dir=tmp_path_factory.mktemp("models"), stats_enabled=False,
    )
    migrate(settings)
    conn = sync_redis(settings)
    conn.flushdb()
    try:
        world, history = generate(USERS, FILMS, HISTORY_EVENTS, seed=SEED, days=30, end_ts=HISTORY_END.timestamp())
        ch = client(settings)
        insert_events(ch, list(history))
        ch.disconnect()
        write_films(settings, world.catalog.rows())
        als = pipeline.retrain(settings)
        popular = pipeline.retrain(settings, pipeline.RetrainConfig(model="popular", force=True, switch=False))
        assert (als.status, popular.status) == ("published", "published"), (als.reason, popular.reason)
        assert publish.current_version(conn) == als.version
        with WorkerProcess(settings, tmp_path_factory.mktemp("worker") / "worker.log") as worker:
            yield Env(worker.settings, worker.settings.web_url, als.version, popular.version)
    finally:
        conn.flushdb()
        conn.close()
        asyncio.run(drop_topics(settings))
        ch = client(settings, database="default")
        ch.execute(f"DROP DATABASE IF EXISTS {settings.clickhouse_database}")
        ch.disconnect()


@pytest.fixture
def services(env: Env) -> Iterator[tuple[Client, redis.Redis]]:
    ch, r = client(env.settings), sync_redis(env.settings)
    yield ch, r
    for running in store.list_all(ch, State.RUNNING):  # a failed test must not block the next one
        operations.stop(ch, r, running.id, "test teardown")
    ch.disconnect()
    r.close()


def served_experiment(url: str) -> str | None:
    with urllib.request.urlopen(f"{url}/v1/users/1/recommendations?limit=1", timeout=10) as response:  # noqa: S310
        return json.loads(response.read()).get("experiment")


def run_days(env: Env, ch: Client, r: redis.Redis, plan: Experiment, days: int) -> rollout.Outcome:
    """Start `plan`, simulate `days` days from its start through the service, evaluate at their end.

    The simulator's seed is the history's: the same world (users' tastes) the models learned;
    the days' visits draw from (seed, the days' end), so each test's traffic is its own."""
    running, _ = operations.start(ch, r, plan, min_users=MIN_USERS)
    alive = lambda: True  # noqa: E731 (the worker fixture fails the module if the worker dies)
    assert proc.wait_for(lambda: served_experiment(env.url) == running.id, DEADLINE_S, alive, interval=0.2), \
        "serving did not follow the experiment"
    before = count_visible(env.settings)
    end = running.started_at + timedelta(days=days)
    summary = asyncio.run(simulate(env.settings, USERS, FILMS, 10**8, seed=SEED, progress=False,
                                   service_url=env.url, live_days=days, end_ts=end.timestamp()))
    assert summary.failed_fetches == 0 and summary.live_sessions > 1_000
    loaded = proc.wait_for(lambda: count_visible(env.settings) - before >= summary.messages_sent, DEADLINE_S, alive)
    assert loaded, f"{count_visible(env.settings) - before} of {summary.messages_sent} events reached ClickHouse"
    [outcome] = rollout.evaluate(ch, r, end, replicates=REPLICATES)
    return outcome


def last_report(ch: Client, experiment_id: str) -> dict:
    return store.decisions(ch, experiment_id)[-1].figures


def plan(experiment_id: str, control: str, challenger: str, first_day: datetime,
         guardrails: tuple[Guardrail, ...] = DEFAULT_GUARDRAILS) -> Experiment:
    return operations.new_plan(challenger, control, first_day, experiment_id, share=0.5, guardrails=guardrails)


def test_popular_against_als_loses_and_als_stays_served(env: Env, services: tuple[Client, redis.Redis]) -> None:
    ch, r = services
    outcome = run_days(env, ch, r, plan("e2e-als-vs-popular", env.als, env.popular, HISTORY_END), days=4)
    report = last_report(ch, outcome.experiment_id)
    assert (outcome.action, outcome.verdict) == (Action.KEEP_CONTROL, "control wins"), report["verdict"]
    assert report["differences"]["watch_time_per_user_day"]["high"] < 0
    assert not report["sample_ratio"]["mismatch"]
    for arm, version in (("control", env.als), ("challenger", env.popular)):  # serving followed the arms
        totals = report["arms"][arm]["totals"]
        assert totals["impressions_own_version"] == totals["impressions"] > 0, (arm, version, totals)
    assert publish.current_version(r) == env.als
    assert store.get(ch, outcome.experiment_id).decision == "keep_control: control wins"


def test_als_against_served_popular_wins_and_is_promoted(env: Env, services: tuple[Client, redis.Redis]) -> None:
    ch, r = services
    publish.rollback(r, env.popular)  # Popular served; ALS challenges it
    first_day = HISTORY_END + timedelta(days=7)
    # D1 retention reacts to what users are shown only through how much they liked their last
    # visit, weakly (a few % here), with a 95 % interval of about +-11 % at ~2,300 users per arm.
    # Showing it within the default 5 % would take 5-10x the users (and the time), so this plan
    # shows it within 20 %, CTR within the default 5 %; test_verdict checks the rules on
    # hand-made figures (docs/experiments.md "End to end").
    guardrails = (Guardrail("d1_retention", 0.20), Guardrail("ctr", 0.05))
    experiment = plan("e2e-popular-vs-als", env.popular, env.als, first_day, guardrails)
    outcome = run_days(env, ch, r, experiment, days=10)
    report = last_report(ch, outcome.experiment_id)
    assert (outcome.action, outcome.verdict) == (Action.PROMOTE, "challenger wins"), report["verdict"]
    diffs = report["differences"]
    assert diffs["watch_time_per_user_day"]["low"] > 0
    assert diffs["d1_retention"]["low"] >= -0.20 and diffs["ctr"]["low"] >= -0.05  # guardrails shown not worse
    assert publish.current_version(r) == env.als  # promoted: the atomic switch
    assert store.active(r) is None and store.get(ch, outcome.experiment_id).state is State.FINISHED


def test_a_a_finds_no_winner_and_its_split_is_sound(env: Env, services: tuple[Client, redis.Redis]) -> None:
    ch, r = services
    publish.rollback(r, env.als)
    first_day = HISTORY_END + timedelta(days=20)
    outcome = run_days(env, ch, r, plan("e2e-a-a", env.als, env.als, first_day), days=4)
    report = last_report(ch, outcome.experiment_id)
    assert outcome.action is Action.CONTINUE, report["verdict"]
    assert report["verdict"]["kind"] == "no difference yet"
    assert not report["sample_ratio"]["mismatch"] and report["sample_ratio"]["p_value"] > 0.001
    users = report["arms"]["control"]["users"], report["arms"]["challenger"]["users"]
    assert min(users) >= MIN_USERS, users
    assert store.get(ch, outcome.experiment_id).state is State.RUNNING and publish.current_version(r) == env.als
