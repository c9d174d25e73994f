"""The experiment store against the real ClickHouse and Redis (fresh database, flushed Redis db)."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Iterator

import pytest
import redis
from clickhouse_driver import Client

from app.experiments import store
from app.experiments.model import Action, Decision, Experiment, Guardrail, InvalidExperiment, State
from app.settings import Settings
from app.storage import redis_keys as keys
from app.storage.clickhouse import client

pytestmark = [pytest.mark.integration, pytest.mark.redis_db(3)]
T0 = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)


@pytest.fixture
def ch(clickhouse_settings: Settings) -> Iterator[Client]:
    conn = client(clickhouse_settings)
    yield conn
    conn.disconnect()


@pytest.fixture
def r(redis_settings: Settings) -> Iterator[redis.Redis]:
    conn = redis.Redis.from_url(redis_settings.redis_url, socket_timeout=5)
    for version in ("v1", "v2", "v3"):  # published versions, as app.recsys.training.publish leaves them
        conn.zadd(keys.VERSIONS, {version: 1.0})
        conn.set(keys.meta(version), json.dumps({"version": version}))
    yield conn
    conn.close()


def exp(experiment_id: str = "exp-1", **changes: object) -> Experiment:
    values = {"control": "v1", "challenger": "v2", "created_at": T0, "guardrails": (Guardrail("ctr", 0.1),), **changes}
    return Experiment(experiment_id, **values)


def rows(ch: Client, table: str) -> int:
    return ch.execute(f"SELECT count() FROM {table} FINAL")[0][0]


def test_create_get_list_round_trip(ch: Client) -> None:
    e = exp(share=0.25, min_users_per_arm=321, max_duration=timedelta(days=3))
    assert store.create(ch, e) == e
    assert store.get(ch, "exp-1") == e
    assert store.create(ch, exp("exp-2", created_at=T0 + timedelta(hours=1))).id == "exp-2"
    assert [x.id for x in store.list_all(ch)] == ["exp-2", "exp-1"]  # newest first
    assert store.list_all(ch, State.RUNNING) == []
    with pytest.raises(store.NotFound, match="no experiment 'nope'"):
        store.get(ch, "nope")


def test_create_is_idempotent_and_refuses_a_different_definition(ch: Client) -> None:
    store.create(ch, exp())
    store.create(ch, exp(created_at=T0 + timedelta(minutes=1)))  # a retry: same definition
    assert rows(ch, "experiments") == 1 and store.get(ch, "exp-1").created_at == T0
    with pytest.raises(store.Conflict, match="another definition"):
        store.create(ch, exp(share=0.5))


def test_start_mirrors_the_running_experiment_and_logs_the_decision(ch: Client, r: redis.Redis) -> None:
    store.create(ch, exp())
    running = store.start(ch, r, "exp-1", T0 + timedelta(hours=1))
    assert running.state is State.RUNNING and running.revision == 2
    assert store.get(ch, "exp-1") == running
    assert store.active(r) == running
    assert store.protected_versions(r) == {"v1", "v2"}
    [decision] = store.decisions(ch, "exp-1")
    assert decision.action is Action.START and decision.figures["plan"]["share"] == 0.1
    # starting again changes nothing (a retried command)
    assert store.start(ch, r, "exp-1", T0 + timedelta(hours=2)) == running
    assert rows(ch, "experiments") == 1 and len(store.decisions(ch, "exp-1")) == 1


def test_start_needs_published_versions_and_no_other_running(ch: Client, r: redis.Redis) -> None:
    store.create(ch, Experiment("exp-x", "v1", "v9", created_at=T0))
    with pytest.raises(store.Conflict, match="'v9' is not published"):
        store.start(ch, r, "exp-x", T0)
    assert store.get(ch, "exp-x").state is State.PLANNED and store.active(r) is None
    store.create(ch, exp())
    store.create(ch, exp("exp-2", challenger="v3"))
    store.start(ch, r, "exp-1", T0)
    with pytest.raises(store.Conflict, match="'exp-1' is running"):
        store.start(ch, r, "exp-2", T0)
    assert store.active(r).id == "exp-1"


def test_end_finishes_logs_the_figures_and_removes_the_mirror(ch: Client, r: redis.Redis) -> None:
    store.create(ch, exp())
    store.start(ch, r, "exp-1", T0)
    figures = {"verdict": "challenger wins", "arms": {"control": {"users": 10}}}
    done = store.end(ch, r, "exp-1", Action.PROMOTE, "challenger wins", figures, T0 + timedelta(days=2))
    assert (done.state, done.decision, done.ended_at) == (State.FINISHED, "promote: challenger wins", T0 + timedelta(days=2))
    assert store.active(r) is None and store.get(ch, "exp-1") == done
    start, promote = store.decisions(ch, "exp-1")
    assert (promote.action, promote.verdict, promote.figures) == (Action.PROMOTE, "challenger wins", figures)
    # a retry of the same ending changes nothing; another ending is refused
    assert store.end(ch, r, "exp-1", Action.KEEP_CONTROL, "late", {}, T0 + timedelta(days=3)) == done
    with pytest.raises(InvalidExperiment, match="cannot become stopped"):
        store.end(ch, r, "exp-1", Action.STOP, "", {}, T0 + timedelta(days=3))
    with pytest.raises(InvalidExperiment, match="does not end"):
        store.end(ch, r, "exp-1", Action.START, "", {}, T0)
    assert len(store.decisions(ch, "exp-1")) == 2


def test_stop_by_hand_keeps_control(ch: Client, r: redis.Redis) -> None:
    store.create(ch, exp())
    store.start(ch, r, "exp-1", T0)
    stopped = store.end(ch, r, "exp-1", Action.STOP, "bad traffic day", {}, T0 + timedelta(hours=3))
    assert stopped.state is State.STOPPED and stopped.decision == "stop: bad traffic day"
    assert store.active(r) is None


def test_repeated_writes_collapse(ch: Client) -> None:
    e = exp()
    for _ in range(3):
        store.save(ch, e)
        store.record(ch, Decision("exp-1", T0, Action.CONTINUE, "no difference yet", {"users": [1, 2]}))
    assert rows(ch, "experiments") == 1 and rows(ch, "experiment_decisions") == 1
    # a newer revision replaces the older one
    store.save(ch, e.moved_to(State.STOPPED, T0))
    assert rows(ch, "experiments") == 1 and store.get(ch, "exp-1").state is State.STOPPED


def test_sync_repairs_the_mirror_from_clickhouse(ch: Client, r: redis.Redis) -> None:
    # a crash between the ClickHouse write and the mirror: running in ClickHouse, absent in Redis
    running = exp().moved_to(State.RUNNING, T0)
    store.save(ch, running)
    assert store.active(r) is None
    assert store.sync_active(ch, r) == running and store.active(r) == running
    # the other way round: a stale mirror of an experiment that has ended
    store.save(ch, running.moved_to(State.STOPPED, T0 + timedelta(hours=1)))
    assert store.sync_active(ch, r) is None and store.active(r) is None
