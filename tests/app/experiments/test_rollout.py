"""The rollout policy against the real ClickHouse and Redis: the periodic evaluation promotes,
keeps the control, goes on, or ends at the deadline, each decision logged with its figures;
an ending logged but not applied (a crash) is completed, not decided again.

Traffic: the simulated arms of test_analysis (a challenger arm watching `boost` times longer)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Iterator

import pytest
import redis
from clickhouse_driver import Client

from app.experiments import operations, rollout, store
from app.experiments.model import Action, Decision, Experiment, Guardrail, State
from app.recsys.training import publish
from app.settings import Settings
from app.storage import redis_keys as keys
from app.storage.interactions import insert_events
from tests.app.experiments.test_analysis import START, simulated
from tests.app.experiments.test_store import ch  # noqa: F401 (fixture)
from tests.integration.web_support import publish_version, sync_redis

pytestmark = [pytest.mark.integration, pytest.mark.redis_db(5)]
AT = datetime(2026, 3, 6, tzinfo=timezone.utc)  # after the five simulated days
REPLICATES = 200


@pytest.fixture
def r(redis_settings: Settings) -> Iterator[redis.Redis]:
    """v1 served, v2 published without the switch."""
    conn = sync_redis(redis_settings)
    publish_version(conn, "v1", seed=1)
    publish_version(conn, "v2", seed=2)
    publish.rollback(conn, "v1")
    yield conn
    conn.close()


def start(ch: Client, r: redis.Redis, experiment_id: str, **changes: object) -> Experiment:
    values = {"share": 0.5, "guardrails": (Guardrail("ctr", 0.1),), "max_days": 14.0, **changes}
    plan = operations.new_plan("v2", "v1", START, experiment_id, **values)
    return operations.start(ch, r, plan, min_users=300)[0]


def test_switch_at_once_unless_experimenting_with_something_served() -> None:
    switch, experiment = Settings.from_env({}), Settings.from_env({"ROLLOUT": "experiment"})
    assert rollout.switches_at_once(switch, "v1") and rollout.switches_at_once(switch, None)
    assert not rollout.switches_at_once(experiment, "v1")
    assert rollout.switches_at_once(experiment, None)  # nothing to compare with


def test_a_winning_challenger_is_promoted(ch: Client, r: redis.Redis) -> None:
    e = start(ch, r, "exp-win")
    insert_events(ch, simulated(e, 1_000, boost=1.3, seed=2))
    [outcome] = rollout.evaluate(ch, r, AT, replicates=REPLICATES)
    assert (outcome.action, outcome.verdict) == (Action.PROMOTE, "challenger wins")
    assert publish.current_version(r) == "v2"
    ended = store.get(ch, e.id)
    assert (ended.state, ended.decision, ended.ended_at) == (State.FINISHED, "promote: challenger wins", AT)
    assert store.active(r) is None
    begin, promote = store.decisions(ch, e.id)
    assert (begin.action, promote.action) == (Action.START, Action.PROMOTE)
    assert promote.figures["arms"]["challenger"]["users"] + promote.figures["arms"]["control"]["users"] == 1_000
    assert promote.figures["verdict"]["kind"] == "challenger wins"
    assert rollout.evaluate(ch, r, AT + timedelta(hours=1)) == []  # nothing runs any more


def test_a_winning_control_stays_served(ch: Client, r: redis.Redis) -> None:
    e = start(ch, r, "exp-lose")
    insert_events(ch, simulated(e, 1_000, boost=1 / 1.3, seed=3))
    [outcome] = rollout.evaluate(ch, r, AT, replicates=REPLICATES)
    assert (outcome.action, outcome.verdict) == (Action.KEEP_CONTROL, "control wins")
    assert publish.current_version(r) == "v1"
    assert store.get(ch, e.id).decision == "keep_control: control wins" and store.active(r) is None


def test_no_verdict_yet_goes_on_and_logs_the_figures_once_per_evaluation(ch: Client, r: redis.Redis) -> None:
    e = start(ch, r, "exp-aa")
    insert_events(ch, simulated(e, 1_000, boost=1.0, seed=1))
    for _ in range(2):  # a re-delivered task at the same moment: the same decision, stored once
        [outcome] = rollout.evaluate(ch, r, AT, replicates=REPLICATES)
    assert outcome.action is Action.CONTINUE and outcome.verdict.startswith("no difference yet (")
    assert store.get(ch, e.id).state is State.RUNNING and store.active(r).id == e.id
    assert [d.action for d in store.decisions(ch, e.id)] == [Action.START, Action.CONTINUE]
    assert store.decisions(ch, e.id)[-1].figures["sample_ratio"]["mismatch"] is False


def test_the_maximum_duration_ends_it_and_keeps_the_control(ch: Client, r: redis.Redis) -> None:
    e = start(ch, r, "exp-late", max_days=2.0)
    [outcome] = rollout.evaluate(ch, r, START + timedelta(days=3), replicates=REPLICATES)
    assert outcome.action is Action.KEEP_CONTROL
    assert outcome.verdict.startswith("maximum duration reached (2 days, 0:00:00); no difference yet")
    assert publish.current_version(r) == "v1" and store.get(ch, e.id).state is State.FINISHED


def test_an_ending_logged_before_a_crash_is_completed_not_decided_again(ch: Client, r: redis.Redis) -> None:
    """The evaluation logged `promote` (its intent), then died before switching. The next one,
    on data that no longer says so (none at all here), completes the promotion as logged."""
    e = start(ch, r, "exp-crash")
    intent = Decision(e.id, AT, Action.PROMOTE, "challenger wins", {"arms": {"challenger": {"users": 500}}})
    store.record(ch, intent)
    [outcome] = rollout.evaluate(ch, r, AT + timedelta(hours=1), replicates=REPLICATES)
    assert (outcome.action, outcome.verdict) == (Action.PROMOTE, "challenger wins")
    assert publish.current_version(r) == "v2"
    ended = store.get(ch, e.id)
    assert ended.ended_at == AT and ended.decision == "promote: challenger wins"
    assert [d.action for d in store.decisions(ch, e.id)] == [Action.START, Action.PROMOTE]  # the intent, once


def test_a_challenger_that_cannot_be_served_is_not_promoted(ch: Client, r: redis.Redis) -> None:
    e = start(ch, r, "exp-gone")
    insert_events(ch, simulated(e, 1_000, boost=1.3, seed=2))
    r.delete(keys.meta("v2"))  # lost (e.g. a Redis restored from an old snapshot)
    [outcome] = rollout.evaluate(ch, r, AT, replicates=REPLICATES)
    assert outcome.action is Action.KEEP_CONTROL and "'v2' has expired" in outcome.verdict
    assert publish.current_version(r) == "v1" and store.get(ch, e.id).state is State.FINISHED


def test_an_experiment_stopped_by_hand_meanwhile_is_not_promoted(ch: Client, r: redis.Redis) -> None:
    e = start(ch, r, "exp-race")
    operations.stop(ch, r, e.id, "stopped while the evaluation ran", AT)
    outcome = rollout._end(ch, r, e, Decision(e.id, AT, Action.PROMOTE, "challenger wins", {}))
    assert outcome.verdict.startswith("not applied: experiment exp-race is stopped")
    assert publish.current_version(r) == "v1" and store.get(ch, e.id).state is State.STOPPED


def test_versions_are_protected_while_it_runs_and_age_again_after(ch: Client, r: redis.Redis) -> None:
    # v1 and v2 become old (beyond the newest three) while the experiment runs
    e = start(ch, r, "exp-ttl")
    for n in range(3, 6):
        publish_version(r, f"v{n}", seed=n)
    publish.rollback(r, "v1")
    assert r.ttl(keys.meta("v2")) == -1
    operations.stop(ch, r, e.id, "done", AT)
    assert r.ttl(keys.meta("v2")) > 0 and r.ttl(keys.meta("v1")) == -1  # v1 is served: kept


def test_after_publish_starts_the_experiment_or_says_why_not(ch: Client, r: redis.Redis) -> None:
    settings = Settings.from_env({"ROLLOUT": "experiment", "ROLLOUT_SHARE": "0.2"})
    said = rollout.after_publish(ch, r, settings, "v2", "v1", START)
    assert said == "experiment rollout-v2 started: v2 on 20% of users against v1"
    e = store.get(ch, "rollout-v2")
    assert (e.state, e.control, e.challenger, e.share) == (State.RUNNING, "v1", "v2", 0.2)
    assert publish.current_version(r) == "v1"
    publish_version(r, "v3", seed=3)
    publish.rollback(r, "v1")
    later = rollout.after_publish(ch, r, settings, "v3", "v1", START + timedelta(days=2))
    assert later == "published, not served: experiment 'rollout-v2' is running; stop it first (one experiment at a time)"
