"""What one retrain run is told (`RetrainConfig`) and what it did (`RunReport`, one row of `model_runs`)."""
from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterator, Mapping

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetrainConfig:
    """Knobs of one run; defaults are what the 48 h schedule uses."""

    window_days: float | None = 365.0  # history before the newest event; None = everything
    holdout_days: float = 7.0
    k: int = 10
    n_recs: int = 100
    n_similar: int = 20
    n_popular: int = 100
    als: Mapping[str, Any] = field(default_factory=dict)  # ALSRecommender kwargs over its defaults
    min_lift: float = 0.0  # ALS NDCG@k must exceed Popular's by this relative margin
    max_drop: float = 0.10  # ... and be at most this much (relative) below the served version's
    force: bool = False  # publish even if the gate says no (recorded as such)
    # Holdout users evaluated (fixed random sample): bounds evaluation time; at 10k
    # users the metric's noise is far below the gate's margins. None = all.
    eval_users: int | None = 10_000
    batch_users: int = 5_000
    # The final fit starts from the holdout model's factors and runs this many iterations
    # (a fifth of a cold fit's time; NDCG as the cold fit's from 2 iterations on planted
    # data, from 1 on the 5M-event benchmark: docs/retrain.md). None = a full cold fit.
    warm_start_iterations: int | None = 3

    def __post_init__(self) -> None:
        if self.holdout_days <= 0 or (self.window_days is not None and self.window_days <= self.holdout_days):
            raise ValueError("need 0 < holdout_days < window_days")
        if min(self.k, self.n_recs, self.n_similar, self.n_popular, self.batch_users,
               1 if self.eval_users is None else self.eval_users,
               1 if self.warm_start_iterations is None else self.warm_start_iterations) < 1:
            raise ValueError("k, n_recs, n_similar, n_popular, batch_users, eval_users and "
                             "warm_start_iterations must be >= 1")
        if not 0 <= self.max_drop < 1 or self.min_lift < 0:
            raise ValueError("need 0 <= max_drop < 1 and min_lift >= 0")

    def params(self) -> dict[str, Any]:
        """JSON-ready, for the run record."""
        params = asdict(self)
        params["als"] = dict(self.als)
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
    served_before: str | None = None
    n_users: int = 0
    n_items: int = 0
    n_interactions: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    baseline_metrics: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    finished_at: datetime | None = None

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a stage into `timings` and log its start and end."""
        log.info("[%s] %s ...", self.version, name)
        started = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = round(time.perf_counter() - started, 3)
            log.info("[%s] %s done in %.2fs", self.version, name, self.timings[name])

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
            "n_users": self.n_users,
            "n_items": self.n_items,
            "n_interactions": self.n_interactions,
            "params": json.dumps(self.params, sort_keys=True),
            "metrics": json.dumps(self.metrics, sort_keys=True),
            "baseline_metrics": json.dumps(self.baseline_metrics, sort_keys=True),
            "timings": json.dumps(self.timings, sort_keys=True),
        }
