"""The search: EASE's lambda on a small grid, then Optuna TPE over the ALS space, within a
trial count and a share of the retrain's time.

TPE is seeded (a run is reproducible) and starts from the previous run's
winner (`enqueue_trial`): retraining every 48 h on similar data then rarely
starts cold. A first run starts from the default point, so the winner is
never worse on validation than the untuned defaults. Trials fit ALS at
`trial_iterations` (8 instead of 15): on two simulated worlds the ranking of
configs at 6 iterations agreed with the full fits at Spearman 0.93-0.97 and
picked the same winner. 20 TPE trials reached >= 0.97 x a grid tuned on the
test in 7 of 9 runs, 30 in 8 of 9 (docs/models.md).

The time budget: tuning may take `time_share` of the whole retrain, i.e.
share / (1 - share) x the rest of it. The rest is the previous run's recorded
time without its tuning when there is one; otherwise it is estimated from the
first trial, scaled to the full matrix and 15 iterations, as 2.5 full ALS fits
(the holdout model, the top-n of every user at publish, and the warm final
fit: what dominates a large retrain, docs/retrain.md). The budget is never
below `MIN_BUDGET_S`: on small data a retrain takes seconds, the share would
allow only a handful of trials (too few for TPE: 10 trials reached 0.93-0.98
x the test-tuned grid on MovieLens, 30 trials >= 0.97), and the absolute cost
is negligible; on large data the share is far above it.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import optuna

from app.recsys.data.dataset import Interactions
from app.recsys.models.als import DEFAULT_ITERATIONS
from app.recsys.progress import Progress, no_progress
from app.recsys.tuning.space import EASE_REGULARIZATIONS, ALSPoint, ease_spec
from app.recsys.tuning.validation import ValidationSplit

log = logging.getLogger(__name__)
optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial otherwise; we log our own

REST_IN_FULL_FITS = 2.5
MIN_BUDGET_S = 30.0


@dataclass(frozen=True)
class TuneConfig:
    """How much to search, and on what."""

    trials: int = 20  # ALS trials (TUNE_TRIALS)
    time_share: float = 0.5  # of the whole retrain (TUNE_TIME_SHARE)
    trial_iterations: int = 8
    startup_trials: int = 8  # random trials before TPE models the space
    fraction: float = 0.2  # each user's last share of the training part is the validation target
    # Trial users: at least this many (all when fewer) ... On the simulator (10k users) trials on 5,000
    # of them picked 0.969 / 0.965 x the test-tuned grid on P1 / P2, on all of them 1.005 / 0.982.
    min_users: int = 10_000
    user_share: float = 0.1  # ... or this share of them when that is more
    # EASE's lambda is picked on the top 2,000 films (a 5,000-film fit costs ~15x more; on MovieLens
    # and the simulators EASE on the top 1,000-4,000 films scored within 1.4% of the full model)
    ease_trial_items: int = 2_000
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.trials, self.trial_iterations, self.startup_trials, self.min_users, self.ease_trial_items) < 1:
            raise ValueError("trials, trial_iterations, startup_trials, min_users and ease_trial_items must be >= 1")
        if not 0 < self.time_share < 1:
            raise ValueError("time_share must be in (0, 1)")


@dataclass(frozen=True)
class Budget:
    """Seconds the tuning may take (see the module doc)."""

    share: float
    rest_s: float | None  # the rest of the retrain, as last measured; None: estimate it
    full_pairs: int  # stored pairs of the full training matrix
    minimum_s: float = MIN_BUDGET_S

    def seconds(self, first_trial_s: float, trial_pairs: int, trial_iterations: int) -> tuple[float, str]:
        """(budget, how the rest was known)."""
        if self.rest_s is not None:
            rest, source = self.rest_s, "previous run"
        else:
            full_fit = first_trial_s * self.full_pairs / max(trial_pairs, 1) * DEFAULT_ITERATIONS / trial_iterations
            rest, source = REST_IN_FULL_FITS * full_fit, "estimated from the first trial"
        share_s = self.share / (1 - self.share) * rest
        return (share_s, source) if share_s >= self.minimum_s else (self.minimum_s, f"minimum ({source}: {share_s:.1f}s)")


@dataclass
class TuneResult:
    """The winners, their validation scores and how the search went (recorded in `model_runs.params`)."""

    als: ALSPoint
    als_value: float
    ease_regularization: float
    ease_value: float
    span_days: float
    start: str
    stopped_by: str  # "trials" | "time"
    budget_s: float
    budget_source: str
    seconds: float
    users: int
    total_users: int
    trials: list[dict[str, Any]] = field(default_factory=list)
    ease: dict[str, float] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """JSON-ready; `als.best` is what the next run starts from."""
        return {
            "als": {"best": self.als.params(), "validation_ndcg@10": self.als_value, "trials": self.trials,
                    "start": self.start, "stopped_by": self.stopped_by},
            "ease": {"regularization": self.ease_regularization, "validation_ndcg@10": self.ease_value,
                     "by_regularization": self.ease},
            "budget_s": round(self.budget_s, 3), "budget_source": self.budget_source,
            "seconds": round(self.seconds, 3), "trial_users": self.users, "users": self.total_users,
            "span_days": round(self.span_days, 3),
        }


def previous_point(params: dict[str, Any] | None) -> ALSPoint | None:
    """The ALS winner a run recorded in its params (None: no tuning recorded, or another space)."""
    tuning = (params or {}).get("tuning") or {}  # null: an untuned (--no-tune) run
    return ALSPoint.from_params((tuning.get("als") or {}).get("best"))


def tune(train: Interactions, config: TuneConfig, budget: Budget, previous: ALSPoint | None = None,
         progress: Progress = no_progress) -> TuneResult:
    """Search on a validation split of `train` (the retrain's part before the gate's holdout)."""
    started = time.perf_counter()
    split = ValidationSplit.carve(train, config.fraction, config.min_users, config.user_share, config.seed)
    total = config.trials + len(EASE_REGULARIZATIONS)
    progress("tune", 0, total)
    log.info("tuning on %d of %d users (%d validation users), %d pairs", split.users, split.total_users,
             len(split.holdout), split.pairs)

    # EASE first: a fixed 3 fits; ALS fills what is left of the budget. lambda is absolute and X'X
    # grows with the users, so a trial on a share of them uses that share of lambda.
    user_share = split.users / max(split.total_users, 1)
    ease = {}
    for done, regularization in enumerate(EASE_REGULARIZATIONS, start=1):
        ease[str(regularization)] = split.score(ease_spec(regularization * user_share, config.ease_trial_items))
        progress("tune", done, total)
    ease_best = max(EASE_REGULARIZATIONS, key=lambda r: ease[str(r)])

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(
        seed=config.seed, n_startup_trials=min(config.startup_trials, config.trials)))
    start = "previous run" if previous is not None else "defaults"
    study.enqueue_trial((previous or ALSPoint()).params())
    clock: dict[str, Any] = {"budget": None, "source": "", "stopped_by": "trials"}

    def objective(trial: optuna.Trial) -> float:
        point = ALSPoint.suggest(trial)
        trial_started = time.perf_counter()
        value = split.score(point.spec(split.span_days, config.trial_iterations))
        if clock["budget"] is None:  # the first trial sizes the budget when no run has measured the rest
            clock["budget"], clock["source"] = budget.seconds(
                time.perf_counter() - trial_started, split.pairs, config.trial_iterations)
        return value

    def after_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        done = len(study.trials)
        progress("tune", len(EASE_REGULARIZATIONS) + done, total)
        log.info("tune trial %d/%d: validation NDCG@10 %.4f %s", done, config.trials, trial.value or 0.0,
                 trial.params)
        elapsed = time.perf_counter() - started
        durations = [t.duration.total_seconds() for t in study.trials if t.duration is not None]
        if done < config.trials and elapsed + sum(durations) / max(len(durations), 1) > clock["budget"]:
            clock["stopped_by"] = "time"
            study.stop()

    study.optimize(objective, n_trials=config.trials, callbacks=[after_trial])
    progress("tune", total, total)
    best = study.best_trial
    result = TuneResult(
        als=ALSPoint(**best.params), als_value=float(best.value), ease_regularization=ease_best,
        ease_value=ease[str(ease_best)], span_days=split.span_days, start=start,
        stopped_by=clock["stopped_by"], budget_s=float(clock["budget"]), budget_source=clock["source"],
        seconds=time.perf_counter() - started, users=split.users, total_users=split.total_users,
        trials=[{"params": t.params, "validation_ndcg@10": t.value} for t in study.trials], ease=ease)
    log.info("tuned in %.1fs (%d trials, stopped by %s; budget %.1fs, %s): ALS %s NDCG@10 %.4f; EASE lambda %g "
             "NDCG@10 %.4f", result.seconds, len(study.trials), result.stopped_by, result.budget_s,
             result.budget_source, best.params, best.value, ease_best, result.ease_value)
    return result
