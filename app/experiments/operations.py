"""What people do with experiments, one function per act: plan and start, stop, look.

The CLI (`cinerec experiment ...`), the admin API (`/v1/admin/experiments`) and
the rollout policy call these, so each act behaves the same whichever way it
is asked for. Synchronous (clickhouse-driver, redis-py): the web runs them in a
thread. Domain errors: `InvalidExperiment` (a definition or time we refuse),
`store.NotFound`, `store.Conflict` (clashes with what is stored or running).
"""
from __future__ import annotations

import logging
import math
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any, Sequence

import redis
from clickhouse_driver import Client

from app.experiments import analysis, store
from app.experiments.model import (
    DEFAULT_GUARDRAILS,
    DEFAULT_MAX_DURATION,
    DEFAULT_MDE,
    DEFAULT_SHARE,
    EPOCH,
    Action,
    Experiment,
    Guardrail,
    InvalidExperiment,
    State,
)
from app.experiments.metrics import DEFAULT_PRIMARY
from app.experiments.stats import users_needed
from app.recsys.training import publish

log = logging.getLogger(__name__)

PLAN_DAYS = 14
MAX_PLAN_DAYS = 366
MAX_DAYS = 366.0
DEFAULT_MAX_DAYS = DEFAULT_MAX_DURATION / timedelta(days=1)
MAX_MIN_USERS = 100_000_000
# A start time may be this far ahead of the clock (clock skew between machines), no more.
START_SKEW = timedelta(minutes=5)


def now() -> datetime:
    """The current time as experiments store it (UTC, whole seconds, as ClickHouse DateTime keeps it)."""
    return datetime.now(timezone.utc).replace(microsecond=0)


def new_plan(
    challenger: str,
    control: str,
    at: datetime,
    experiment_id: str | None = None,
    share: float = DEFAULT_SHARE,
    primary: str = DEFAULT_PRIMARY,
    guardrails: Sequence[Guardrail] = DEFAULT_GUARDRAILS,
    mde: float = DEFAULT_MDE,
    max_days: float = DEFAULT_MAX_DAYS,
) -> Experiment:
    """A planned experiment starting at `at` (default id `exp-<start time>`); `InvalidExperiment` says what is wrong.

    `at` may be in the past (simulated past days), not in the future: serving
    follows an experiment as soon as it starts, so events before a future
    start would be served by the arms and still not count.
    """
    if at.tzinfo is None:
        raise InvalidExperiment(f"the start time must say its time zone (UTC), got {at.isoformat()}")
    at = at.astimezone(timezone.utc).replace(microsecond=0)
    if not EPOCH + timedelta(days=1) <= at <= now() + START_SKEW:
        raise InvalidExperiment(f"the start time must be after 1970-01-02 and not in the future, got {at.isoformat()}")
    if not (isinstance(max_days, (int, float)) and 0 < max_days <= MAX_DAYS):
        raise InvalidExperiment(f"the maximum duration must be in (0, {MAX_DAYS:.0f}] days, got {max_days}")
    return Experiment(
        experiment_id or f"exp-{at:%Y%m%dT%H%M%SZ}", control, challenger, share=share, primary=primary,
        guardrails=tuple(guardrails), mde=mde, max_duration=timedelta(days=max_days), created_at=at,
    )


def plan_sample(ch: Client, plan: Experiment, at: datetime, plan_days: int = PLAN_DAYS) -> tuple[int, str]:
    """Users per arm (the smaller arm's need) to detect `plan.mde` on the primary metric, from
    the last `plan_days` of traffic; the plan's default when there is too little. And a line saying how."""
    if not 1 <= plan_days <= MAX_PLAN_DAYS:
        raise InvalidExperiment(f"the planning window must be 1..{MAX_PLAN_DAYS} days, got {plan_days}")
    value, variance, users = analysis.baseline(ch, plan.primary, at, plan_days)
    if users >= 2 and value > 0 and not math.isnan(variance):
        needed = min(users_needed(variance, value, plan.mde, plan.share))
        return needed, (f"plan: {plan.primary} = {value:.4g} (per-user variance {variance:.4g}, {users} users in the "
                        f"last {plan_days} days): {needed} users in the smaller arm to detect {plan.mde:+.0%}")
    return plan.min_users_per_arm, (f"plan: too little traffic in the last {plan_days} days to size the sample; "
                                    f"using {plan.min_users_per_arm} users per arm")


def start(ch: Client, r: redis.Redis, plan: Experiment, min_users: int | None = None,
          plan_days: int = PLAN_DAYS) -> tuple[Experiment, str]:
    """Create `plan` (its sample sized from recent traffic unless `min_users` is given) and start it
    at its `created_at`. Returns the running experiment and how its sample was planned.

    Idempotent: a retry with the same definition returns the running experiment. Nothing is
    stored when a version is not published.
    """
    for version in (plan.control, plan.challenger):
        store.require_published(r, version)
    if min_users is None:
        min_users, note = plan_sample(ch, plan, plan.created_at, plan_days)
    elif not 1 <= min_users <= MAX_MIN_USERS:
        raise InvalidExperiment(f"the planned minimum sample must be 1..{MAX_MIN_USERS} users per arm, got {min_users}")
    else:
        note = f"plan: {min_users} users per arm (given)"
    created = store.create(ch, replace(plan, min_users_per_arm=min_users))
    return store.start(ch, r, created.id, plan.created_at), note


def served_version(r: redis.Redis) -> str:
    """The served version (the default control); `store.Conflict` when nothing is served yet."""
    version = publish.current_version(r)
    if not version:
        raise store.Conflict("no version is served yet (recs:current): name the control version")
    return version


def stop(ch: Client, r: redis.Redis, experiment_id: str, reason: str, at: datetime | None = None) -> Experiment:
    """Stop a planned or running experiment by hand: control stays served. A running one's
    report up to now is logged with the decision; its versions get their TTLs back."""
    e = store.get(ch, experiment_id)
    if e.state not in (State.PLANNED, State.RUNNING):
        raise store.Conflict(f"experiment {e.id} is {e.state.value} ({e.decision or 'ended'}); only a planned or "
                             "running experiment can be stopped")
    at = at or now()
    figures = analysis.analyse(ch, e, at).to_json() if e.state is State.RUNNING else {}
    stopped = store.end(ch, r, experiment_id, Action.STOP, reason, figures, at)
    age_versions(r)
    return stopped


def age_versions(r: redis.Redis) -> None:
    """Give old versions their TTLs (back) once an experiment no longer protects them
    (housekeeping: on a Redis error the next publish or ending does it)."""
    try:
        publish.expire_old_versions(r)
    except redis.RedisError:
        log.exception("could not age old versions; the next publish or experiment ending retries")


def overview(ch: Client, r: redis.Redis) -> dict[str, Any]:
    """Every experiment (newest first) and the one serving follows; repairs that mirror first."""
    active = store.sync_active(ch, r)
    return {"experiments": [e.to_json() for e in store.list_all(ch)], "active": active.id if active else None}


def details(ch: Client, experiment_id: str, at: datetime | None = None) -> dict[str, Any]:
    """One experiment, its decision log (without the figures of each) and, once started, its report to `at`."""
    e = store.get(ch, experiment_id)
    log_entries = [{"at": d.decided_at.isoformat(), "action": d.action.value, "verdict": d.verdict}
                   for d in store.decisions(ch, experiment_id)]
    report = analysis.analyse(ch, e, at or now()).to_json() if e.started_at else None
    return {"experiment": e.to_json(), "decisions": log_entries, "report": report}
