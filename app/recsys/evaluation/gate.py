"""The publish gate: does the challenger beat Popular, and does it hold up against the served model?

It looks only at per-user NDCG@k on one holdout (`evaluate.Evaluation.ndcg`,
aligned users), so the challenger can be any model that can be scored
there, and the served model is judged on the same users. Each comparison is
a paired bootstrap (`bootstrap.paired_bootstrap`): a mean difference and a
95% interval, so the gate can say when it cannot tell.

    better than Popular     the interval of (challenger - Popular) lies above
                            `min_lift` x Popular's mean
    not worse than served   the low end of (challenger - served) is above
                            -`max_drop` x served's mean (the tolerance)

    pass          better than Popular and not worse than served: publish
    fail          clearly not better than Popular (interval below the bar),
                  or worse than served beyond the tolerance: keep serving
    inconclusive  the interval vs Popular straddles the bar. With nothing
                  served, publish the better point estimate: the challenger
                  if its mean is ahead, else nothing (the popular list,
                  always published, serves everyone); with a served model,
                  keep serving it
    no-data       no user to evaluate on: keep serving (or serve the popular list)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.recsys.evaluation.bootstrap import Difference, paired_bootstrap


@dataclass(frozen=True)
class GatePolicy:
    """The gate's margins (relative to the compared model's mean NDCG on the holdout)."""

    min_lift: float = 0.0  # the challenger must beat Popular by this much
    max_drop: float = 0.10  # ... and may be at most this much below the served model (the tolerance)

    def __post_init__(self) -> None:
        if not 0 <= self.max_drop < 1 or self.min_lift < 0:
            raise ValueError("need 0 <= max_drop < 1 and min_lift >= 0")


@dataclass(frozen=True)
class Verdict:
    """What the gate decided, why, and the evidence (recorded with the run)."""

    publish: bool
    outcome: str  # pass | fail | inconclusive | no-data
    reason: str
    vs_popular: Difference | None = None
    vs_served: Difference | None = None


def decide(challenger: np.ndarray, popular: np.ndarray, served: np.ndarray | None,
           policy: GatePolicy = GatePolicy(), name: str = "the model", serving: bool | None = None) -> Verdict:
    """The verdict from per-user NDCG of the challenger, Popular and the served model, on the same users.

    `serving`: whether a model is served at all (default: `served` is given); a
    served model that could not be scored (`served` None) still counts as served.
    """
    serving = served is not None if serving is None else serving
    if not len(challenger):
        return Verdict(False, "no-data", "no holdout user with a new film to evaluate on: cannot tell")
    vs_popular = paired_bootstrap(challenger, popular)
    vs_served = paired_bootstrap(challenger, served) if served is not None else None
    bar = policy.min_lift * float(np.mean(popular))
    lift = f" + {policy.min_lift:.0%}" if policy.min_lift else ""
    versus = f"{name} vs Popular{lift}: NDCG {vs_popular} on {vs_popular.users} users"
    if vs_popular.high < bar:
        return Verdict(False, "fail", f"{versus}: worse", vs_popular, vs_served)
    if vs_popular.low <= bar:
        if serving:
            return Verdict(False, "inconclusive", f"{versus}: cannot tell; keeping the served model",
                           vs_popular, vs_served)
        if vs_popular.mean > bar:
            return Verdict(True, "inconclusive", f"{versus}: cannot tell; nothing served, publishing the "
                           "better point estimate", vs_popular, vs_served)
        return Verdict(False, "inconclusive", f"{versus}: cannot tell; nothing served and Popular's point "
                       "estimate is better: the popular list serves everyone", vs_popular, vs_served)
    if vs_served is not None:
        tolerance = policy.max_drop * float(np.mean(served))
        if vs_served.low < -tolerance:
            return Verdict(False, "fail", f"{versus}: better; but vs the served model {vs_served}, "
                           f"possibly more than the tolerance {tolerance:.4f} worse", vs_popular, vs_served)
        return Verdict(True, "pass", f"{versus}: better; vs the served model {vs_served} (tolerance "
                       f"{tolerance:.4f})", vs_popular, vs_served)
    nothing = "the served model could not be refitted" if serving else "nothing served"
    return Verdict(True, "pass", f"{versus}: better; {nothing}", vs_popular, vs_served)


@dataclass(frozen=True)
class Choice:
    """Which candidate model ships (the two-level model or the best single model), and why."""

    shipped: str
    reason: str
    vs_single: Difference | None = None  # per-user NDCG, two-level - best single, on the same holdout


def choose(two_level: np.ndarray | None, singles: dict[str, np.ndarray], two_level_name: str = "two-level",
           always: bool = False) -> Choice:
    """The best single model (highest mean per-user NDCG), unless the two-level model beats it.

    "Beats" means the paired 95% interval of (two-level - best single) lies above zero: the
    two-level model costs a ranker and a second pass at publish, and on data where one model
    already fits (research: a latent-factor world, 1.00x) its point estimate wins half the time
    by chance. The chosen model then faces the usual gate (`decide`) against Popular and the
    served model. `singles` must be scored on the same users as `two_level`. `always`: the
    two-level model whatever the comparison says (benchmarks of its cost; recorded as such).
    """
    if not singles:
        raise ValueError("no single model to compare with")
    best = max(singles, key=lambda name: (float(np.mean(singles[name])) if len(singles[name]) else 0.0, name))
    if two_level is None:
        return Choice(best, f"{best}: the best single model (no two-level model this run)")
    if not len(two_level):
        return Choice(best, f"{best}: no holdout user to compare the two-level model on")
    diff = paired_bootstrap(two_level, singles[best])
    versus = f"{two_level_name} vs {best} (best single): NDCG {diff} on {diff.users} users"
    if diff.low > 0:
        return Choice(two_level_name, f"{versus}: better", diff)
    if always:
        return Choice(two_level_name, f"{versus}: shipped anyway (always)", diff)
    return Choice(best, f"{versus}: not shown better, the single model ships", diff)
