"""An experiment as a value object: what is compared, on whom, for how long, and where it stands.

Immutable: a state change is a new `Experiment` with `revision + 1`, which is
also the version column of its ClickHouse row (ReplacingMergeTree keeps the
highest), so re-writing the same revision is harmless (idempotent writes).
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any

from app.experiments.assignment import challenger_threshold, hash_seed
from app.experiments.metrics import DEFAULT_PRIMARY, metric

DEFAULT_SHARE = 0.1
DEFAULT_MDE = 0.05
DEFAULT_MIN_USERS_PER_ARM = 1_000
DEFAULT_MAX_DURATION = timedelta(days=14)
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)  # "not set" in ClickHouse (no Nullable on old servers)


class InvalidExperiment(ValueError):
    """An experiment definition or state change we refuse; the message says why."""


class State(str, Enum):
    PLANNED = "planned"
    RUNNING = "running"
    STOPPED = "stopped"  # ended early (by hand, or invalid): control stays
    FINISHED = "finished"  # ended by a verdict: see `decision`


_NEXT: dict[State, frozenset[State]] = {
    State.PLANNED: frozenset({State.RUNNING, State.STOPPED}),
    State.RUNNING: frozenset({State.STOPPED, State.FINISHED}),
    State.STOPPED: frozenset(),
    State.FINISHED: frozenset(),
}


@dataclass(frozen=True)
class Guardrail:
    """A metric the challenger may not make worse by more than `tolerance` (relative, 0.05 = 5 %)."""

    metric: str
    tolerance: float

    def __post_init__(self) -> None:
        try:
            metric(self.metric)
        except ValueError as exc:
            raise InvalidExperiment(f"guardrail: {exc}") from None
        if not 0.0 <= self.tolerance < 1.0:
            raise InvalidExperiment(f"guardrail {self.metric}: tolerance must be in [0, 1), got {self.tolerance}")

    @classmethod
    def parse(cls, text: str) -> "Guardrail":
        """From `metric=tolerance` (the CLI form), e.g. `d1_retention=0.05`."""
        name, sep, tol = text.partition("=")
        try:
            return cls(name.strip(), float(tol)) if sep else cls(name.strip(), DEFAULT_GUARDRAIL_TOLERANCE)
        except ValueError as exc:
            raise InvalidExperiment(f"guardrail {text!r}: {exc}") from None


DEFAULT_GUARDRAIL_TOLERANCE = 0.05
DEFAULT_GUARDRAILS = (Guardrail("d1_retention", DEFAULT_GUARDRAIL_TOLERANCE), Guardrail("ctr", DEFAULT_GUARDRAIL_TOLERANCE))


ID_PATTERN = _ID.pattern


def check_id(experiment_id: str) -> str:
    """`experiment_id` if it is a valid id (letters, digits, `_.:-`, at most 64), else `InvalidExperiment`."""
    if not isinstance(experiment_id, str) or not _ID.fullmatch(experiment_id):
        raise InvalidExperiment(f"experiment id must match {_ID.pattern}, got {str(experiment_id)[:80]!r}")
    return experiment_id


def _utc(value: datetime | None) -> datetime | None:
    if value is None or value == EPOCH:
        return None
    if value.tzinfo is None:
        raise InvalidExperiment(f"times must be timezone-aware (UTC), got {value!r}")
    return value.astimezone(timezone.utc)


@dataclass(frozen=True)
class Experiment:
    id: str
    control: str
    challenger: str
    share: float = DEFAULT_SHARE  # of users in the challenger arm
    primary: str = DEFAULT_PRIMARY
    guardrails: tuple[Guardrail, ...] = DEFAULT_GUARDRAILS
    mde: float = DEFAULT_MDE  # planned minimum detectable effect on the primary metric (relative)
    min_users_per_arm: int = DEFAULT_MIN_USERS_PER_ARM
    max_duration: timedelta = DEFAULT_MAX_DURATION
    created_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc).replace(microsecond=0))
    started_at: datetime | None = None
    ended_at: datetime | None = None
    state: State = State.PLANNED
    decision: str = ""  # why it ended, e.g. "promote: challenger wins (...)"
    revision: int = 1

    def __post_init__(self) -> None:
        check_id(self.id)
        if not self.control or not self.challenger:
            raise InvalidExperiment("control and challenger versions are required")
        if not 0.0 < self.share < 1.0:
            raise InvalidExperiment(f"challenger share must be in (0, 1), got {self.share}")
        try:
            metric(self.primary)
        except ValueError as exc:
            raise InvalidExperiment(f"primary metric: {exc}") from None
        if len({g.metric for g in self.guardrails}) != len(self.guardrails) or self.primary in {
            g.metric for g in self.guardrails
        }:
            raise InvalidExperiment("each guardrail must be a different metric from the primary and each other")
        if not 0.0 < self.mde < 1.0:
            raise InvalidExperiment(f"planned effect (mde) must be in (0, 1), got {self.mde}")
        if self.min_users_per_arm < 1:
            raise InvalidExperiment(f"planned minimum sample must be >= 1 user per arm, got {self.min_users_per_arm}")
        if self.max_duration <= timedelta(0):
            raise InvalidExperiment("maximum duration must be positive")
        object.__setattr__(self, "state", State(self.state))
        object.__setattr__(self, "guardrails", tuple(self.guardrails))
        for name in ("created_at", "started_at", "ended_at"):
            object.__setattr__(self, name, _utc(getattr(self, name)))

    @property
    def hash_seed(self) -> int:
        return hash_seed(self.id)

    @property
    def threshold(self) -> int:
        return challenger_threshold(self.share)

    @property
    def deadline(self) -> datetime | None:
        """When the maximum duration runs out (None before the start)."""
        return None if self.started_at is None else self.started_at + self.max_duration

    def window(self, now: datetime) -> tuple[datetime, datetime]:
        """[start, stop) of the analysed events: from the start to the end, or to `now` while running."""
        if self.started_at is None:
            raise InvalidExperiment(f"experiment {self.id} has not started")
        stop = self.ended_at or min(now.astimezone(timezone.utc), self.deadline or now)
        return self.started_at, max(stop, self.started_at)

    def moved_to(self, state: State, at: datetime, decision: str = "") -> "Experiment":
        """The next revision in `state`; `InvalidExperiment` for a move the lifecycle forbids."""
        if state not in _NEXT[self.state]:
            raise InvalidExperiment(f"experiment {self.id} is {self.state.value}; it cannot become {state.value}")
        changes: dict[str, Any] = {"state": state, "revision": self.revision + 1}
        if state is State.RUNNING:
            changes["started_at"] = at
        else:
            changes["ended_at"] = at
            changes["decision"] = decision
        return replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values (the Redis mirror, the CLI's --json, the decision log)."""
        out = asdict(self)
        out["guardrails"] = [[g.metric, g.tolerance] for g in self.guardrails]
        out["max_duration_s"] = int(out.pop("max_duration").total_seconds())
        out["state"] = self.state.value
        for name in ("created_at", "started_at", "ended_at"):
            out[name] = getattr(self, name).isoformat() if getattr(self, name) else None
        out["hash_seed"], out["threshold"] = self.hash_seed, self.threshold
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Experiment":
        values = {k: v for k, v in data.items() if k not in ("hash_seed", "threshold", "max_duration_s")}
        values["guardrails"] = tuple(Guardrail(m, float(t)) for m, t in data["guardrails"])
        values["max_duration"] = timedelta(seconds=int(data["max_duration_s"]))
        for name in ("created_at", "started_at", "ended_at"):
            values[name] = datetime.fromisoformat(data[name]) if data.get(name) else None
        return cls(**values)


class Action(str, Enum):
    """What was decided about an experiment (the decision log's `action`)."""

    START = "start"
    PROMOTE = "promote"  # challenger wins: it becomes the served version, the experiment finishes
    KEEP_CONTROL = "keep_control"  # control wins, invalid, or out of time: the experiment finishes
    STOP = "stop"  # stopped by hand: control stays
    CONTINUE = "continue"  # evaluated, no verdict yet


@dataclass(frozen=True)
class Decision:
    """One entry of the decision log: what was decided, when, on which verdict and figures."""

    experiment_id: str
    decided_at: datetime
    action: Action
    verdict: str
    figures: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "action", Action(self.action))
        object.__setattr__(self, "decided_at", _utc(self.decided_at))

    @property
    def figures_json(self) -> str:
        return json.dumps(self.figures, sort_keys=True, default=str)

    @property
    def decision_id(self) -> str:
        """A hash of the whole decision: writing it twice stores it once."""
        text = "\x1f".join((self.experiment_id, self.decided_at.isoformat(), self.action.value, self.verdict, self.figures_json))
        return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()
