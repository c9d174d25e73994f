"""The rollout policy: how a retrained version that passed the gate reaches users, and
what the periodic evaluation does with a running experiment.

- `ROLLOUT=switch` (default): the new version replaces the served one for
  everyone at once (`recs:current`), as before experiments existed.
- `ROLLOUT=experiment`: the version is published without the switch and an
  experiment starts: the served version is the control, the new one the
  challenger on `ROLLOUT_SHARE` of the users. With nothing served yet there is
  nothing to compare with: the version is switched to as under `switch`.
  One experiment runs at a time: a version that passes the gate while one runs
  stays published, unserved, and the run's reason says so.

`evaluate` (the Celery beat task every EXPERIMENT_EVAL_MINUTES, or
`cinerec experiment evaluate`) reads each running experiment's verdict and
applies `verdict.next_action`: PROMOTE switches `recs:current` to the
challenger (atomically, as a rollback does) and finishes the experiment;
KEEP_CONTROL (control wins, invalid split, or the maximum duration passed)
finishes it and leaves `recs:current` alone; CONTINUE logs the figures. Every
decision is logged with the whole report.

At-least-once safe: an ending decision is logged first (its intent), then
applied under the experiment lock, then the experiment is saved as finished
with the same decision (stored once: its id hashes its content). An
evaluation that dies in between is completed by the next one from the logged
decision, without reading a possibly different verdict from newer data.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import redis
from clickhouse_driver import Client

from app.experiments import analysis, operations, store
from app.experiments.model import Action, Decision, Experiment, InvalidExperiment, State
from app.experiments.stats import BOOTSTRAP_REPLICATES
from app.experiments.verdict import next_action
from app.recsys.training import publish
from app.settings import Settings

log = logging.getLogger(__name__)

SWITCH, EXPERIMENT = "switch", "experiment"
_ENDINGS = (Action.PROMOTE, Action.KEEP_CONTROL)


def switches_at_once(settings: Settings, served: str | None) -> bool:
    """Whether a version that passed the gate replaces the served one for everyone right away."""
    return settings.rollout == SWITCH or served is None


def experiment_id(version: str) -> str:
    """The id of the experiment a retrain starts for its version (so a retried start is the same one)."""
    return f"rollout-{version}"


def challenge(ch: Client, r: redis.Redis, settings: Settings, version: str, served: str, at: datetime) -> Experiment:
    """Start the rollout experiment: `served` (control) against `version` (challenger) at ROLLOUT_SHARE,
    its sample planned from recent traffic. `store.Conflict` when another experiment runs."""
    plan = operations.new_plan(version, served, at, experiment_id(version), share=settings.rollout_share)
    running, note = operations.start(ch, r, plan)
    log.info("rollout: %s; %s", running.id, note)
    return running


def after_publish(ch: Client, r: redis.Redis, settings: Settings, version: str, served: str | None,
                  at: datetime) -> str:
    """The retrain's rollout step for a version published without the switch under
    ROLLOUT=experiment: start its experiment. Returns what happened, for the run's record.

    Never raises for a refused or failed start: the version is published either
    way, and an operator can start the experiment by hand.
    """
    if served is None:
        raise ValueError("nothing is served: the version should have been switched to")
    try:
        e = challenge(ch, r, settings, version, served, at)
    except (store.Conflict, InvalidExperiment) as exc:
        return f"published, not served: {exc}"
    except Exception as exc:  # ClickHouse or Redis failed: the version stays published
        log.exception("rollout: could not start the experiment for %s", version)
        return f"published, not served: the experiment could not start ({type(exc).__name__}: {exc})"
    return f"experiment {e.id} started: {e.challenger} on {e.share:.0%} of users against {e.control}"


@dataclass(frozen=True)
class Outcome:
    """What one evaluation did with one running experiment."""

    experiment_id: str
    action: Action
    verdict: str

    def __str__(self) -> str:
        return f"{self.experiment_id}: {self.action.value} ({self.verdict})"


def evaluate(ch: Client, r: redis.Redis, at: datetime | None = None,
             replicates: int = BOOTSTRAP_REPLICATES) -> list[Outcome]:
    """Evaluate every running experiment as of `at` (default now) and apply the policy.

    The caller holds `lock:rollout` (app.storage.locks.rollout_lock) around it.
    """
    at = (at or operations.now()).replace(microsecond=0)
    store.sync_active(ch, r)  # a crash between ClickHouse and the mirror is repaired first
    return [_evaluate_one(ch, r, e, at, replicates) for e in store.list_all(ch, State.RUNNING)]


def _pending_ending(ch: Client, e: Experiment) -> Decision | None:
    """An ending decided (logged) but not applied: the experiment is still running."""
    log_entries = store.decisions(ch, e.id)
    last = log_entries[-1] if log_entries else None
    return last if last is not None and last.action in _ENDINGS else None


def _evaluate_one(ch: Client, r: redis.Redis, e: Experiment, at: datetime, replicates: int) -> Outcome:
    decision = _pending_ending(ch, e)
    if decision is None:
        report = analysis.analyse(ch, e, at, replicates)
        action, why = next_action(e, report.verdict, at)
        decision = Decision(e.id, at, action, why, report.to_json())
        store.record(ch, decision)  # CONTINUE: the log entry; an ending: its intent
        if action is Action.CONTINUE:
            log.info("experiment %s continues: %s", e.id, why)
            return Outcome(e.id, action, why)
    else:
        log.info("experiment %s: completing the %s decided at %s", e.id, decision.action.value, decision.decided_at)
    return _end(ch, r, e, decision)


def _end(ch: Client, r: redis.Redis, e: Experiment, decision: Decision) -> Outcome:
    """Apply a logged ending: promote (switch, then finish) or keep the control (finish)."""
    def promote(running: Experiment) -> None:
        publish.rollback(r, running.challenger)  # persists its keys, switches only if it still exists
        log.info("experiment %s: promoted %s (recs:current)", running.id, running.challenger)

    try:
        store.end(ch, r, e.id, decision.action, decision.verdict, decision.figures, decision.decided_at,
                  apply=promote if decision.action is Action.PROMOTE else None)
    except publish.PublishError as exc:  # the challenger cannot be served: keep the control instead
        verdict = f"{decision.verdict}; but {exc}"
        kept = Decision(e.id, decision.decided_at, Action.KEEP_CONTROL, verdict, decision.figures)
        store.record(ch, kept)
        return _end(ch, r, e, kept)
    except InvalidExperiment as exc:  # stopped by hand meanwhile: nothing to apply
        log.warning("experiment %s: %s not applied: %s", e.id, decision.action.value, exc)
        return Outcome(e.id, decision.action, f"not applied: {exc}")
    operations.age_versions(r)
    return Outcome(e.id, decision.action, decision.verdict)
