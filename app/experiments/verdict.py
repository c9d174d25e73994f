"""The verdict of an experiment from its figures, and what the rollout policy does with it.

Pure functions over `Evidence` (built by `app.experiments.analysis`), so the
rules are tested with hand-made figures. In order:
1. `invalid (sample ratio mismatch)`: the arms' user counts are implausible
   under the planned share (chi-square p < 0.001): the split itself is broken.
2. `no difference yet (N more users per arm needed ...)` while an arm is below
   the planned minimum sample: no verdict is read before it (no peeking).
   N counts users of the smaller arm: the larger one fills in proportion.
3. `control wins`: the primary metric is worse (interval below zero), or a
   guardrail is breached (worse beyond its tolerance, interval below zero).
4. `challenger wins`: the primary metric is better (interval above zero) and
   every guardrail is shown not worse than its tolerance (interval's low end
   above -tolerance: a non-inferiority test).
5. otherwise `no difference yet`, with the users per arm still needed to
   detect the planned effect on the primary metric (and each undecided
   guardrail's tolerance) at 80 % power, from the observed variance.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum

from app.experiments.model import Action, Experiment
from app.experiments.stats import Difference, SampleRatio


class Kind(str, Enum):
    CHALLENGER_WINS = "challenger wins"
    CONTROL_WINS = "control wins"
    NO_DIFFERENCE = "no difference yet"
    INVALID = "invalid"


class Guard(str, Enum):
    OK = "ok"  # not worse than the tolerance (non-inferior)
    BREACHED = "breached"  # worse beyond the tolerance
    UNCLEAR = "unclear"  # not enough data to tell


def guardrail_status(diff: Difference, tolerance: float) -> Guard:
    if diff.low >= -tolerance:  # NaN compares False: unclear
        return Guard.OK
    if diff.high < 0 and diff.relative < -tolerance:
        return Guard.BREACHED
    return Guard.UNCLEAR


@dataclass(frozen=True)
class Evidence:
    """The figures a verdict is read from (relative differences challenger vs control)."""

    users: tuple[int, int]  # (control, challenger)
    sample_ratio: SampleRatio
    primary: Difference
    guardrails: dict[str, Difference]
    # (control, challenger) users needed for the planned effect, per metric (primary and guardrails);
    # absent when the variance is unknown (too few users)
    needed: dict[str, tuple[int, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    kind: Kind
    more_users_per_arm: int = 0
    reasons: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        if self.kind is Kind.INVALID:
            return "invalid (sample ratio mismatch)"
        if self.kind is Kind.NO_DIFFERENCE:
            return f"no difference yet ({self.more_users_per_arm} more users per arm needed for the planned effect)"
        return self.kind.value


def _shortfall(users: tuple[int, int], needed: tuple[int, int], share: float) -> int:
    """More users the smaller arm needs (the larger one fills in proportion to the split,
    and `users_needed` sizes both arms in that proportion)."""
    smaller = 1 if share <= 0.5 else 0
    return max(0, min(needed) - users[smaller])


def decide(experiment: Experiment, evidence: Evidence) -> Verdict:
    """The verdict by the rules of this module's docstring."""
    srm = evidence.sample_ratio
    if srm.mismatch:
        return Verdict(Kind.INVALID, reasons=(
            f"users {srm.control} control / {srm.challenger} challenger for a planned share of "
            f"{experiment.share:.0%}: chi-square {srm.chi2:.1f}, p = {srm.p_value:.2g}",
        ))
    users, primary = evidence.users, evidence.primary
    share = experiment.share
    power_more = _shortfall(users, evidence.needed.get(experiment.primary, (0, 0)), share)
    planned_more = _shortfall(users, (experiment.min_users_per_arm,) * 2, share)
    if planned_more:
        return Verdict(Kind.NO_DIFFERENCE, max(planned_more, power_more), (
            f"planned minimum sample: {experiment.min_users_per_arm} users per arm, have {users[0]} / {users[1]}",
        ))
    status = {g.metric: guardrail_status(evidence.guardrails[g.metric], g.tolerance) for g in experiment.guardrails}
    breached = [name for name, s in status.items() if s is Guard.BREACHED]
    if primary.worse or breached:
        return Verdict(Kind.CONTROL_WINS, reasons=tuple(
            ([f"{experiment.primary} worse: {_pct(primary)}"] if primary.worse else [])
            + [f"guardrail {name} worse beyond its tolerance: {_pct(evidence.guardrails[name])}" for name in breached]
        ))
    unclear = [name for name, s in status.items() if s is Guard.UNCLEAR]
    if primary.better and not unclear:
        return Verdict(Kind.CHALLENGER_WINS, reasons=(f"{experiment.primary} better: {_pct(primary)}",))
    more = max([power_more] + [_shortfall(users, evidence.needed.get(name, (0, 0)), share) for name in unclear])
    reasons = ([] if primary.better else [f"{experiment.primary}: {_pct(primary)}, interval not clear of zero"]) + [
        f"guardrail {name} not yet shown within its tolerance: {_pct(evidence.guardrails[name])}" for name in unclear
    ]
    return Verdict(Kind.NO_DIFFERENCE, more, tuple(reasons))


def _pct(diff: Difference) -> str:
    if math.isnan(diff.relative):
        return "not measurable yet"
    interval = "no interval yet" if math.isnan(diff.low) else f"{diff.low:+.1%}, {diff.high:+.1%}"
    return f"{diff.relative:+.1%} [{interval}]"


def next_action(experiment: Experiment, verdict: Verdict, now: datetime) -> tuple[Action, str]:
    """What the periodic evaluation does with a running experiment's verdict, and why:
    PROMOTE (switch recs:current to the challenger), KEEP_CONTROL (end it, control
    stays served) or CONTINUE."""
    if verdict.kind is Kind.CHALLENGER_WINS:
        return Action.PROMOTE, verdict.text
    if verdict.kind in (Kind.CONTROL_WINS, Kind.INVALID):
        return Action.KEEP_CONTROL, verdict.text
    deadline = experiment.deadline
    if deadline is not None and now >= deadline:
        return Action.KEEP_CONTROL, f"maximum duration reached ({experiment.max_duration}); {verdict.text}"
    return Action.CONTINUE, verdict.text
