"""The retrain pipeline: load -> matrix -> holdout evaluation -> gate -> fit -> publish -> record.

Plain Python (no Celery): the Celery task, `cinerec train` and the benchmark
all call `retrain`. A rejected or failed run leaves `recs:current` alone and is
still recorded in ClickHouse `model_runs` with the reason, so operators can
see why nothing changed.
"""
from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from functools import partial
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import redis
from clickhouse_driver import Client
from redis.exceptions import LockError
from threadpoolctl import threadpool_limits

from app.recsys.training import publish
from app.recsys.data.dataset import Dataset, EventWeights, Interactions, build_dataset
from app.recsys.evaluation.evaluate import evaluate, holdout_start, time_holdout
from app.recsys.models.foldin import pack_factors
from app.recsys.data.load import load_films, load_interactions
from app.recsys.evaluation.metrics import NDCG
from app.recsys.models.registry import ALSRecommender, PopularRecommender
from app.recsys.progress import Progress, no_progress
from app.settings import Settings
from app.storage import redis_keys as keys
from app.storage.clickhouse import client as clickhouse_client

log = logging.getLogger(__name__)

RETRAIN_LOCK_TIMEOUT_S = 6 * 3600  # above the longest retrain; Celery's visibility timeout matches

# (dataset, since, until, warm start) -> ALS fitted on the events of [since, until) that `dataset`
# holds, starting from the given model's factors when the backend can (implicit; Spark ignores it).
FitALS = Callable[[Dataset, float | None, float | None, ALSRecommender | None], ALSRecommender]


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

    def row(self) -> dict[str, Any]:
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


def gate(
    metrics: Mapping[str, float],
    baseline: Mapping[str, float],
    served: Mapping[str, float] | None,
    config: RetrainConfig,
) -> tuple[bool, str]:
    """Publish only if ALS beats Popular on NDCG@k and is not clearly worse than what is served."""
    key = NDCG(config.k).key
    if not metrics.get("users") or key not in metrics or key not in baseline:
        return False, f"no {key}: the holdout has no users with new films to evaluate on"
    ours, popular = metrics[key], baseline[key]
    if not ours > popular * (1 + config.min_lift):
        lift = f" by {config.min_lift:.0%}" if config.min_lift else ""
        return False, f"ALS {key} {ours:.4f} does not beat Popular {popular:.4f}{lift}"
    if served and key in served and ours < served[key] * (1 - config.max_drop):
        return False, (f"ALS {key} {ours:.4f} is more than {config.max_drop:.0%} below "
                       f"the served version's {served[key]:.4f}")
    return True, f"ALS {key} {ours:.4f} > Popular {popular:.4f}"


def retrain(
    settings: Settings,
    config: RetrainConfig = RetrainConfig(),
    progress: Progress = no_progress,
    version: str | None = None,
) -> RunReport:
    """One full run; returns its report (also recorded in `model_runs`)."""
    report = RunReport(version=version or publish.new_version(), started_at=datetime.now(timezone.utc),
                       backend=settings.train_backend)
    conn = publish.connect(settings)
    ch = clickhouse_client(settings)
    try:
        # implicit runs its own threads; BLAS threads underneath only oversubscribe
        # the cores (implicit warns about it): top-n is ~2x faster with BLAS at 1.
        with threadpool_limits(1, "blas"), als_fitter(settings, config) as fit_als:
            _run(settings, config, progress, report, ch, conn, fit_als)
    except Exception as exc:
        report.status, report.reason = "failed", f"{type(exc).__name__}: {exc}"
        report.finished_at = datetime.now(timezone.utc)
        try:
            record_run(ch, settings.clickhouse_database, report)
        except Exception:  # ClickHouse itself may be what failed; the original error matters more
            log.exception("[%s] could not record the failed run", report.version)
        raise
    else:
        report.finished_at = datetime.now(timezone.utc)
        record_run(ch, settings.clickhouse_database, report)
    finally:
        ch.disconnect()
        conn.close()
    return report


@contextlib.contextmanager
def als_fitter(settings: Settings, config: RetrainConfig) -> Iterator[FitALS]:
    """How ALS is fitted under TRAIN_BACKEND: `implicit` on the loaded matrix, or Spark
    reading the same window from ClickHouse itself (app.recsys.models.spark_als); same model type either way."""
    if settings.train_backend != "spark":
        yield lambda dataset, since, until, warm: ALSRecommender(**config.als).fit(
            dataset, warm_start=warm, iterations=config.warm_start_iterations if warm else None)
        return
    from app.recsys.models.spark_als import SparkALSTrainer

    with SparkALSTrainer(settings, config.als) as trainer:
        yield lambda dataset, since, until, warm: trainer.fit(dataset.users, dataset.items, since, until)


def _run(settings: Settings, config: RetrainConfig, progress: Progress, report: RunReport,
         ch: Client, conn: redis.Redis, fit_als: FitALS) -> None:
    weights = EventWeights()
    report.served_before = publish.current_version(conn)
    since = _window_start(ch, settings, config)
    with report.stage("load"):
        interactions = load_interactions(settings, since=since, progress=progress)
        films = load_films(ch, settings.clickhouse_database)
        ch.disconnect()  # idle for the whole fit otherwise; the driver reconnects for the record
    with report.stage("matrix"):
        dataset = build_dataset(interactions, weights)
        train, test = time_holdout(interactions, config.holdout_days)
        train_dataset = build_dataset(train, weights)
        test = sample_users(test, config.eval_users)
    report.n_users, report.n_items, report.n_interactions = len(dataset.users), len(dataset.items), len(interactions)
    if not dataset.matrix.nnz:
        report.status, report.reason = "rejected", "no interactions in the training window"
        return
    if not train_dataset.matrix.nnz:
        report.status = "rejected"
        report.reason = f"no events before the {config.holdout_days:g}-day holdout: nothing to evaluate a model on"
        return
    report.params = {"als": ALSRecommender(**config.als).params(), "weights": weights.params(),
                     "config": _config_params(config), "backend": settings.train_backend}
    with report.stage("evaluate"):
        holdout_model = fit_als(train_dataset, since, holdout_start(interactions, config.holdout_days), None)
        report.metrics = evaluate(holdout_model, train_dataset, test, k=config.k)
        report.baseline_metrics = evaluate(PopularRecommender().fit(train_dataset), train_dataset, test, k=config.k)
    served = (publish.read_meta(conn, report.served_before) or {}).get("metrics") if report.served_before else None
    ok, report.reason = gate(report.metrics, report.baseline_metrics, served, config)
    log.info("[%s] gate: %s (%s)", report.version, "pass" if ok else "REJECT", report.reason)
    if not ok and not config.force:
        report.status = "rejected"
        return
    if not ok:
        report.reason = f"forced: {report.reason}"
    with report.stage("fit"):
        warm = holdout_model if config.warm_start_iterations else None
        als = fit_als(dataset, since, None, warm)
        popular = PopularRecommender().fit(dataset)
    with report.stage("save"):  # the artifact first: a served version always has one
        als.save(settings.model_dir / report.version)
    with report.stage("publish"):
        try:
            _publish(conn, report, config, dataset, als, popular, films.as_mapping(), progress)
        except Exception:
            _discard_partial(conn, report.version)
            raise
    report.status, report.published = "published", True
    try:  # housekeeping: artifacts of versions Redis no longer keeps; the next run retries
        publish.prune_model_dirs(conn, settings.model_dir)
    except (OSError, redis.RedisError):
        log.exception("[%s] could not prune old model folders in %s", report.version, settings.model_dir)


def _publish(conn: redis.Redis, report: RunReport, config: RetrainConfig, dataset: Dataset,
             als: ALSRecommender, popular: PopularRecommender, titles: Mapping[int, str], progress: Progress) -> None:
    """Every key of the version, then the meta + pointer switch last."""
    version, n_users, n_items = report.version, len(dataset.users), len(dataset.items)

    def user_blocks() -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        for start in range(0, n_users, config.batch_users):
            idx = np.arange(start, min(start + config.batch_users, n_users))
            ids, scores = als.recommend(idx, config.n_recs, seen=dataset.matrix)
            yield dataset.users.to_external(idx), dataset.items.to_external(ids), scores

    def similar_blocks() -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        for start in range(0, n_items, config.batch_users):
            idx = np.arange(start, min(start + config.batch_users, n_items))
            ids, scores = als.similar_items(idx, config.n_similar)
            yield dataset.items.to_external(idx), dataset.items.to_external(ids), scores

    # Redis write time apart from the model's top-n time (the generators), for the benchmark;
    # the next block's top-n is computed while this one is written.
    _, report.timings["publish_users_write"] = publish.write_ranked_batches(
        conn, partial(keys.user_recs, version), publish.prefetched(user_blocks()), n_users, "publish users", progress)
    _, report.timings["publish_similar_write"] = publish.write_ranked_batches(
        conn, partial(keys.similar, version), publish.prefetched(similar_blocks()), n_items, "publish similar",
        progress)
    pop_ids, pop_scores = popular.top(config.n_popular)
    keep = pop_ids >= 0
    conn.set(keys.popular(version), keys.encode_ranked(dataset.items.to_external(pop_ids[keep]).tolist(),
                                                       pop_scores[keep].tolist()))
    conn.set(keys.factors(version), pack_factors(als))
    publish.write_titles(conn, titles)
    publish.activate(conn, version, {
        "version": version,
        "trained_at": report.started_at.isoformat(),
        "metrics": report.metrics,
        "baseline_metrics": report.baseline_metrics,
        "n_users": n_users,
        "n_items": n_items,
        "n_interactions": report.n_interactions,
        "params": report.params,
        "reason": report.reason,
    })


def _discard_partial(conn: redis.Redis, version: str) -> None:
    """Keys of a publish that failed before the switch: nothing reads or expires them, so delete them."""
    try:
        deleted = publish.discard(conn, version)
        log.warning("[%s] publish failed: deleted its %d keys; the served version is unchanged", version, deleted)
    except publish.PublishError:
        log.warning("[%s] publish failed after the switch: the version stays served", version)
    except Exception:  # Redis may be what failed; the publish error matters more
        log.exception("[%s] publish failed and its keys could not be deleted", version)


def sample_users(interactions: Interactions, limit: int | None, seed: int = 0) -> Interactions:
    """The events of at most `limit` users, a fixed random sample (all events when fewer users)."""
    users = np.unique(interactions.user_id)
    if limit is None or len(users) <= limit:
        return interactions
    chosen = np.random.default_rng(seed).choice(users, size=limit, replace=False)
    return interactions.select(np.isin(interactions.user_id, chosen))


def _window_start(ch: Client, settings: Settings, config: RetrainConfig) -> float | None:
    """Start of the training window, relative to the newest event (not the wall clock:
    an imported history such as MovieLens is years old)."""
    if config.window_days is None:
        return None
    (newest,), = ch.execute(f"SELECT toUInt32(max(ts)) FROM {settings.clickhouse_database}.interactions")
    return float(newest) - config.window_days * 86400 if newest else None


def _config_params(config: RetrainConfig) -> dict[str, Any]:
    params = asdict(config)
    params["als"] = dict(config.als)
    return params


def record_run(ch: Client, database: str, report: RunReport) -> None:
    """Insert the run into `model_runs` (ReplacingMergeTree by version: a re-insert replaces)."""
    row = report.row()
    ch.execute(f"INSERT INTO {database}.model_runs ({', '.join(row)}) VALUES", [row])


def recorded_runs(ch: Client, database: str, limit: int = 20) -> list[dict[str, Any]]:
    """Latest runs, newest first, as dicts (for `cinerec models`)."""
    columns = ("version", "started_at", "finished_at", "status", "published", "reason", "n_users", "n_items",
               "n_interactions", "metrics", "baseline_metrics", "timings")
    rows = ch.execute(
        f"SELECT {', '.join(columns)} FROM {database}.model_runs FINAL ORDER BY started_at DESC LIMIT %(limit)s",
        {"limit": limit},
    )
    return [dict(zip(columns, row)) for row in rows]


@contextlib.contextmanager
def retrain_lock(settings: Settings, timeout_s: float = RETRAIN_LOCK_TIMEOUT_S) -> Iterator[bool]:
    """Yield True while holding `lock:retrain`, False if another run holds it (no overlapping runs)."""
    conn = publish.connect(settings)
    lock = conn.lock(keys.RETRAIN_LOCK, timeout=timeout_s, blocking=False)
    acquired = lock.acquire()
    try:
        yield acquired
    finally:
        if acquired:
            try:
                lock.release()
            except LockError:  # held past its timeout: another run may own it now, leave that alone
                log.warning("lock:retrain expired before the run ended (timeout %ss)", timeout_s)
        conn.close()
