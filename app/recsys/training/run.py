"""What one retrain run is told (`RetrainConfig`) and what it did (`RunReport`, one row of `model_runs`)."""
from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterator, Mapping

from app.recsys.evaluation.bootstrap import Difference
from app.recsys.evaluation.gate import GatePolicy
from app.recsys.evaluation.splits import HoldoutCut
from app.recsys.models.registry import MODELS, ALSRecommender
from app.recsys.ranking.twolevel import TwoLevelConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetrainConfig:
    """Knobs of one run; defaults are what the 48 h schedule uses."""

    # History used, counted back from the newest event; None = every stored event (the default:
    # a fixed window dropped 90% of an imported history's users, and old events are down-weighted
    # by the tuned recency half-life instead; docs/retrain.md "Training window").
    window_days: float | None = None
    # None: the holdout grows back from the newest event (settings GATE_MIN_USERS,
    # GATE_MAX_HOLDOUT_SHARE); a number: the last that many days, whatever they hold.
    holdout_days: float | None = None
    k: int = 10
    n_recs: int = 100
    n_similar: int = 20
    n_popular: int = 100
    als: Mapping[str, Any] = field(default_factory=dict)  # ALSRecommender kwargs over its defaults
    gate: GatePolicy = field(default_factory=GatePolicy)
    force: bool = False  # publish even if the gate says no (recorded as such)
    # Holdout users evaluated (fixed random sample, never fewer than GATE_MIN_USERS): bounds
    # evaluation time; at 10k users the gate's interval is a few thousandths of NDCG wide. None = all.
    eval_users: int | None = 10_000
    batch_users: int = 5_000
    # The final fit starts from the holdout model's factors and runs this many iterations
    # (a fifth of a cold fit's time; NDCG as the cold fit's from 2 iterations on planted
    # data, from 1 on the 5M-event benchmark: docs/retrain.md). None = a full cold fit.
    warm_start_iterations: int | None = 3
    # The model fitted, gated as the challenger and published (a name of app.recsys.models.registry);
    # `als` params above apply to ALS only. E.g. Popular as a version of its own, for an online
    # experiment against the served model (`cinerec train --model popular --force --no-switch`).
    model: str = ALSRecommender.name
    # False: publish without serving it, whatever ROLLOUT says; an experiment or a rollback serves it later.
    switch: bool = True
    # The two-level challenger over the first level of ALS (docs/ranking.md); None: single models only.
    two_level: TwoLevelConfig | None = field(default_factory=TwoLevelConfig)
    # Search the weighting and ALS/EASE params on a validation split of the training part (then
    # `als` is ignored); the trial count and time share default to TUNE_TRIALS / TUNE_TIME_SHARE.
    tune: bool = True
    tune_trials: int | None = None
    tune_time_share: float | None = None
    # First-level models fitted besides ALS on the train part, their recall@100 on the holdout recorded,
    # the FM on at most this many users (the others folded in): a full FM costs 10+ min at 4.6M pairs,
    # its sampling is linear in the users trained (docs/models.md).
    first_level: tuple[str, ...] = ("ease", "item_knn", "fm")
    fm_max_users: int | None = 2_000

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; one of {', '.join(sorted(MODELS))}")
        if self.holdout_days is not None and (
                self.holdout_days <= 0 or (self.window_days is not None and self.window_days <= self.holdout_days)):
            raise ValueError("need 0 < holdout_days < window_days")
        if self.window_days is not None and self.window_days <= 0:
            raise ValueError("need window_days > 0")
        if min(self.k, self.n_recs, self.n_similar, self.n_popular, self.batch_users,
               1 if self.eval_users is None else self.eval_users,
               1 if self.warm_start_iterations is None else self.warm_start_iterations) < 1:
            raise ValueError("k, n_recs, n_similar, n_popular, batch_users, eval_users and "
                             "warm_start_iterations must be >= 1")
        if (self.tune_trials is not None and self.tune_trials < 1) or (
                self.tune_time_share is not None and not 0 < self.tune_time_share < 1):
            raise ValueError("need tune_trials >= 1 and 0 < tune_time_share < 1")
        unknown = set(self.first_level) - {"ease", "item_knn", "fm"}
        if unknown or (self.fm_max_users is not None and self.fm_max_users < 1):
            raise ValueError(f"first_level models must be ease, item_knn or fm (got {sorted(unknown)}) "
                             "and fm_max_users >= 1")

    def params(self) -> dict[str, Any]:
        """JSON-ready, for the run record."""
        params = asdict(self)
        params["als"] = dict(self.als)
        params["two_level"] = self.two_level.params() if self.two_level else None
        params["first_level"] = list(self.first_level)
        return params


@dataclass
class RunReport:
    """What one run did; one row of `model_runs`."""

    version: str
    started_at: datetime
    backend: str = "implicit"
    status: str = "running"  # published | rejected | failed
    published: bool = False
    reason: str = ""
    verdict: str = ""  # the gate's: pass | fail | inconclusive | no-data ("" before the gate)
    served_before: str | None = None
    holdout: HoldoutCut | None = None
    vs_popular: Difference | None = None  # per-user NDCG@k, challenger - Popular
    vs_served: Difference | None = None  # ... challenger - the served model refitted on the same data
    shipped: str = ""  # the candidate the gate judged: the best single model, or "two-level" when it beat it
    vs_single: Difference | None = None  # per-user NDCG@k, two-level - the best single model
    models: dict[str, Any] = field(default_factory=dict)  # each candidate's metrics, two-level details
    n_users: int = 0
    n_items: int = 0
    n_interactions: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    baseline_metrics: dict[str, float] = field(default_factory=dict)
    first_level: dict[str, dict[str, float]] = field(default_factory=dict)  # per model: recall@100, NDCG@10
    timings: dict[str, float] = field(default_factory=dict)
    finished_at: datetime | None = None

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a stage into `timings` (wall seconds, and this process's CPU seconds as `<stage>_cpu`:
        on a shared machine the CPU figure is the one that says where the time goes) and log it."""
        log.info("[%s] %s ...", self.version, name)
        started, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.timings[name] = round(time.perf_counter() - started, 3)
            self.timings[f"{name}_cpu"] = round(time.process_time() - cpu, 3)
            log.info("[%s] %s done in %.2fs (%.2fs CPU)", self.version, name, self.timings[name],
                     self.timings[f"{name}_cpu"])

    def reject(self, reason: str) -> None:
        self.status, self.reason = "rejected", reason

    def fail(self, exc: BaseException) -> None:
        self.status, self.reason = "failed", f"{type(exc).__name__}: {exc}"

    def finish(self) -> None:
        self.finished_at = datetime.now(timezone.utc)

    def row(self) -> dict[str, Any]:
        """The `model_runs` row."""
        return {
            "version": self.version,
            "started_at": self.started_at,  # aware: the driver converts from UTC whatever the server's zone
            "finished_at": self.finished_at or datetime.now(timezone.utc),
            "backend": self.backend,
            "status": self.status,
            "published": int(self.published),
            "reason": self.reason,
            "verdict": self.verdict,
            "served_version": self.served_before or "",
            "holdout_rule": self.holdout.rule if self.holdout else "",
            "holdout_start": datetime.fromtimestamp(self.holdout.start if self.holdout else 0, timezone.utc),
            "holdout_users": self.holdout.users if self.holdout else 0,
            "holdout_share": self.holdout.share if self.holdout else 0.0,
            **_difference_columns("vs_popular", self.vs_popular),
            **_difference_columns("vs_served", self.vs_served),
            "shipped": self.shipped,
            **_difference_columns("vs_single", self.vs_single),
            "models": json.dumps(self.models, sort_keys=True, default=float),
            "n_users": self.n_users,
            "n_items": self.n_items,
            "n_interactions": self.n_interactions,
            "params": json.dumps(self.params, sort_keys=True),
            "metrics": json.dumps(self.metrics, sort_keys=True),
            "baseline_metrics": json.dumps(self.baseline_metrics, sort_keys=True),
            "first_level": json.dumps(self.first_level, sort_keys=True),
            "timings": json.dumps(self.timings, sort_keys=True),
        }


def _difference_columns(prefix: str, difference: Difference | None) -> dict[str, float | None]:
    """`{prefix}_mean/_low/_high` (NULL when there was no comparison)."""
    return {f"{prefix}_{part}": getattr(difference, part) if difference else None for part in ("mean", "low", "high")}
