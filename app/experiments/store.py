"""Experiments and their decisions in ClickHouse; the running one mirrored to Redis.

ClickHouse `experiments` is the truth (one row per revision, ReplacingMergeTree
on `revision`, read FINAL); Redis `exp:active` is the copy serving reads on
every request. A state change writes ClickHouse first, then the mirror, so a
crash in between leaves the truth right and `sync_active` repairs the mirror
(the CLI's `status` runs it). State changes hold `lock:experiments`, so two
operators (or the periodic evaluation) cannot both start an experiment.

Idempotent: writing the same revision again, re-starting a running
experiment, or ending an ended one with the same state changes nothing.
"""
from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, Callable, Iterator

import redis
from clickhouse_driver import Client

from app.experiments.model import EPOCH, Action, Decision, Experiment, Guardrail, InvalidExperiment, State
from app.storage import redis_keys as keys
from app.storage import version_keys

log = logging.getLogger(__name__)

LOCK_TIMEOUT_S = 30

_COLUMNS = (
    "experiment_id", "control", "challenger", "share", "hash_seed", "threshold", "primary_metric", "guardrails",
    "mde", "min_users_per_arm", "max_duration_s", "created_at", "started_at", "ended_at", "state", "decision",
    "revision",
)
_DECISION_COLUMNS = ("experiment_id", "decided_at", "action", "verdict", "figures", "decision_id")


class NotFound(LookupError):
    """No experiment with that id."""


class Conflict(RuntimeError):
    """The change clashes with what is stored (another experiment runs, a different definition exists)."""


def _row(e: Experiment) -> tuple:
    data = e.to_json()
    return (
        e.id, e.control, e.challenger, e.share, e.hash_seed, e.threshold, e.primary,
        json.dumps(data["guardrails"]), e.mde, e.min_users_per_arm, data["max_duration_s"],
        e.created_at, e.started_at or EPOCH, e.ended_at or EPOCH, e.state.value, e.decision, e.revision,
    )


def _experiment(row: tuple) -> Experiment:
    r = dict(zip(_COLUMNS, row))
    return Experiment(
        id=r["experiment_id"], control=r["control"], challenger=r["challenger"], share=r["share"],
        primary=r["primary_metric"], guardrails=tuple(Guardrail(m, t) for m, t in json.loads(r["guardrails"])),
        mde=r["mde"], min_users_per_arm=r["min_users_per_arm"], max_duration=timedelta(seconds=r["max_duration_s"]),
        created_at=r["created_at"], started_at=r["started_at"], ended_at=r["ended_at"], state=State(r["state"]),
        decision=r["decision"], revision=r["revision"],
    )

_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM experiments FINAL"


def save(ch: Client, experiment: Experiment) -> None:
    """Write one revision (re-writing the same revision is harmless)."""
    ch.execute(f"INSERT INTO experiments ({', '.join(_COLUMNS)}) VALUES", [_row(experiment)])


def get(ch: Client, experiment_id: str) -> Experiment:
    rows = ch.execute(f"{_SELECT} WHERE experiment_id = %(id)s", {"id": experiment_id})
    if not rows:
        raise NotFound(f"no experiment {experiment_id!r}; `cinerec experiment status` lists them")
    return _experiment(rows[0])


def list_all(ch: Client, state: State | None = None) -> list[Experiment]:
    """Experiments, newest first (optionally only those in `state`)."""
    where = " WHERE state = %(state)s" if state else ""
    rows = ch.execute(f"{_SELECT}{where} ORDER BY created_at DESC, experiment_id", {"state": state.value if state else ""})
    return [_experiment(row) for row in rows]


def create(ch: Client, experiment: Experiment) -> Experiment:
    """Store a planned experiment; a retry with the same definition returns the stored one."""
    try:
        stored = get(ch, experiment.id)
    except NotFound:
        save(ch, experiment)
        return experiment
    if _definition(stored) != _definition(experiment):
        raise Conflict(f"experiment {experiment.id!r} already exists with another definition")
    return stored


def _definition(e: Experiment) -> dict[str, Any]:
    data = e.to_json()
    return {k: v for k, v in data.items() if k not in ("created_at", "started_at", "ended_at", "state", "decision", "revision")}


@contextmanager
def _locked(r: redis.Redis) -> Iterator[None]:
    lock = r.lock(keys.EXPERIMENTS_LOCK, timeout=LOCK_TIMEOUT_S, blocking_timeout=LOCK_TIMEOUT_S)
    if not lock.acquire():
        raise Conflict(f"another experiment change holds {keys.EXPERIMENTS_LOCK}; try again")
    try:
        yield
    finally:
        try:
            lock.release()
        except redis.exceptions.LockError:
            log.warning("%s expired before the change ended", keys.EXPERIMENTS_LOCK)


def require_published(r: redis.Redis, version: str) -> None:
    """`Conflict` unless `version` is published and has not expired."""
    if r.zscore(keys.VERSIONS, version) is None or not r.exists(keys.meta(version)):
        raise Conflict(f"version {version!r} is not published (or has expired); see `cinerec models`")


def start(ch: Client, r: redis.Redis, experiment_id: str, at: datetime) -> Experiment:
    """Move a planned experiment to running, log the decision, mirror it for serving, and
    take the TTL off both versions (they must not expire while it runs).

    Both versions must be published; only one experiment runs at a time.
    Starting the running experiment again only refreshes its mirror and protection.
    """
    with _locked(r):
        e = get(ch, experiment_id)
        if e.state is State.RUNNING:
            mirror(r, e)
            protect(r, e)
            return e
        others = [o.id for o in list_all(ch, State.RUNNING) if o.id != e.id]
        if others:
            raise Conflict(f"experiment {others[0]!r} is running; stop it first (one experiment at a time)")
        for version in (e.control, e.challenger):
            require_published(r, version)
        running = e.moved_to(State.RUNNING, at)
        save(ch, running)
        record(ch, Decision(e.id, running.started_at, Action.START, "", {"plan": running.to_json()}))
        mirror(r, running)
        protect(r, running)
        log.info("experiment %s running: %s vs %s at %.0f%%", e.id, e.control, e.challenger, 100 * e.share)
        return running


def end(
    ch: Client, r: redis.Redis, experiment_id: str, action: Action, verdict: str, figures: dict[str, Any], at: datetime,
    apply: Callable[[Experiment], None] | None = None,
) -> Experiment:
    """End an experiment: STOP (by hand) -> stopped; PROMOTE / KEEP_CONTROL -> finished.

    The decision is logged with its figures and the mirror removed. Ending an
    experiment already in the target state returns it unchanged. `apply` runs
    under the lock once the move is known to be allowed and before it is
    saved: the rollout policy switches `recs:current` there on PROMOTE, so an
    experiment stopped by hand meanwhile is never promoted, and a failed switch
    leaves it running.
    """
    target = {Action.STOP: State.STOPPED, Action.PROMOTE: State.FINISHED, Action.KEEP_CONTROL: State.FINISHED}.get(action)
    if target is None:
        raise InvalidExperiment(f"{action.value} does not end an experiment")
    with _locked(r):
        e = get(ch, experiment_id)
        if e.state is target:
            return e
        ended = e.moved_to(target, at, f"{action.value}: {verdict}" if verdict else action.value)
        if apply is not None:
            apply(e)
        save(ch, ended)
        record(ch, Decision(e.id, ended.ended_at, action, verdict, figures))
        _unmirror(r, e.id)
        log.info("experiment %s %s: %s", e.id, target.value, ended.decision)
        return ended


def record(ch: Client, decision: Decision) -> None:
    """Append to the decision log (the same decision written twice is stored once)."""
    ch.execute(
        f"INSERT INTO experiment_decisions ({', '.join(_DECISION_COLUMNS)}) VALUES",
        [(decision.experiment_id, decision.decided_at, decision.action.value, decision.verdict,
          decision.figures_json, decision.decision_id)],
    )


def decisions(ch: Client, experiment_id: str) -> list[Decision]:
    """The decision log of one experiment, oldest first."""
    rows = ch.execute(
        "SELECT experiment_id, decided_at, action, verdict, figures FROM experiment_decisions FINAL"
        " WHERE experiment_id = %(id)s ORDER BY decided_at, decision_id",
        {"id": experiment_id},
    )
    return [Decision(eid, at, Action(action), verdict, json.loads(figures)) for eid, at, action, verdict, figures in rows]


def mirror(r: redis.Redis, experiment: Experiment) -> None:
    r.set(keys.EXPERIMENT_ACTIVE, json.dumps(experiment.to_json(), sort_keys=True))


def _unmirror(r: redis.Redis, experiment_id: str) -> None:
    current = active(r)
    if current is not None and current.id == experiment_id:
        r.delete(keys.EXPERIMENT_ACTIVE)


def active(r: redis.Redis) -> Experiment | None:
    """The running experiment as serving sees it (None when none runs)."""
    raw = r.get(keys.EXPERIMENT_ACTIVE)
    return Experiment.from_json(json.loads(raw)) if raw else None


def sync_active(ch: Client, r: redis.Redis) -> Experiment | None:
    """Make the Redis mirror match ClickHouse (after a Redis flush or a crash between the two writes)."""
    running = list_all(ch, State.RUNNING)
    if len(running) > 1:
        log.error("%d experiments are running (%s); mirroring the newest", len(running), ", ".join(e.id for e in running))
    if running:
        if active(r) != running[0]:
            mirror(r, running[0])
        return running[0]
    r.delete(keys.EXPERIMENT_ACTIVE)
    return None


def protect(r: redis.Redis, experiment: Experiment) -> None:
    """Take the TTL off both versions' keys (one may be an old version already aging).

    Called after the mirror is written: version expiry reads the mirror
    (`protected_versions`) before and after aging a version, so whichever of
    the two runs last leaves the keys without a TTL.
    """
    for version in {experiment.control, experiment.challenger}:
        if version_keys.persist(r, version):
            log.info("version %s: TTL removed while experiment %s runs", version, experiment.id)


def protected_versions(r: redis.Redis) -> set[str]:
    """Versions the running experiment serves: version expiry must skip them."""
    e = active(r)
    return set() if e is None else {e.control, e.challenger}
