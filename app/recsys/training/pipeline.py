"""The retrain run, stage by stage: load -> split -> evaluate -> gate -> fit -> save -> publish -> record.

Plain Python (no Celery): the Celery task, `cinerec train` and the benchmarks
all call `retrain`. Storage is reached only through its adapters (the run
record: app.storage.model_runs; Redis: `publish`); the retrain lock is the
caller's (app.storage.locks), taken around the whole run. The run writes its
model into its own folder, claimed for its whole life (`artifacts`). A rejected or
failed run leaves `recs:current` alone and is still recorded, with the
reason, so operators can see why nothing changed.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone

import redis
from threadpoolctl import threadpool_limits

from app.recsys.data.dataset import DAY_S, Dataset, EventWeights, Interactions, build_dataset
from app.recsys.data.load import load_films, load_interactions, newest_event_ts
from app.recsys.evaluation.evaluate import evaluate
from app.recsys.evaluation.gate import gate
from app.recsys.evaluation.splits import holdout_start, sample_users, time_holdout
from app.recsys.models.als import ALSRecommender
from app.recsys.models.popularity import PopularRecommender
from app.recsys.progress import Progress, no_progress
from app.recsys.training import artifacts, publish
from app.recsys.training.fitters import FitALS, als_fitter
from app.recsys.training.run import RetrainConfig, RunReport
from app.settings import Settings
from app.storage import model_runs
from app.storage.redis_client import connect

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Split:
    """The holdout split of the loaded window, and the whole window as a matrix."""

    since: float | None  # window start
    until: float  # holdout start: train is [since, until), test is [until, newest]
    full: Dataset
    train: Dataset
    test: Interactions  # at most `eval_users` users


def retrain(
    settings: Settings,
    config: RetrainConfig = RetrainConfig(),
    progress: Progress = no_progress,
    version: str | None = None,
) -> RunReport:
    """One full run; returns its report (also recorded in `model_runs`, failed runs included)."""
    report = RunReport(version=version or publish.new_version(), started_at=datetime.now(timezone.utc),
                       backend=settings.train_backend)
    conn = connect(settings)
    try:
        # implicit runs its own threads; BLAS threads underneath only oversubscribe
        # the cores (implicit warns about it): top-n is ~2x faster with BLAS at 1.
        with (artifacts.claim(settings.model_dir / report.version), threadpool_limits(1, "blas"),
              als_fitter(settings, config.als, config.warm_start_iterations) as fit_als):
            _run(settings, config, progress, report, conn, fit_als)
    except Exception as exc:
        report.fail(exc)
        report.finish()
        try:
            model_runs.record(settings, report.row())
        except Exception:  # ClickHouse itself may be what failed; the original error matters more
            log.exception("[%s] could not record the failed run", report.version)
        raise
    finally:
        conn.close()
    report.finish()
    model_runs.record(settings, report.row())
    return report


def _run(settings: Settings, config: RetrainConfig, progress: Progress, report: RunReport,
         conn: redis.Redis, fit_als: FitALS) -> None:
    """The stages in order; returns early (report rejected) when one says stop."""
    weights = EventWeights()
    report.served_before = publish.current_version(conn)
    report.params = {"als": ALSRecommender(**config.als).params(), "weights": weights.params(),
                     "config": config.params(), "backend": settings.train_backend}

    with report.stage("load"):
        since = _window_start(settings, config)
        interactions = load_interactions(settings, since=since, progress=progress)
        films = load_films(settings)
    with report.stage("split"):
        split = _split(interactions, since, weights, config)
    report.n_users, report.n_items = len(split.full.users), len(split.full.items)
    report.n_interactions = len(interactions)
    if not split.full.matrix.nnz:
        report.reject("no interactions in the training window")
        return
    if not split.train.matrix.nnz:
        report.reject(f"no events before the {config.holdout_days:g}-day holdout: nothing to evaluate a model on")
        return

    with report.stage("evaluate"):
        holdout_model = fit_als(split.train, split.since, split.until, None)
        report.metrics = evaluate(holdout_model, split.train, split.test, k=config.k)
        report.baseline_metrics = evaluate(PopularRecommender().fit(split.train), split.train, split.test, k=config.k)

    served = (publish.read_meta(conn, report.served_before) or {}).get("metrics") if report.served_before else None
    ok, report.reason = gate(report.metrics, report.baseline_metrics, served, config.k, config.min_lift,
                             config.max_drop)
    log.info("[%s] gate: %s (%s)", report.version, "pass" if ok else "REJECT", report.reason)
    if not ok and not config.force:
        report.reject(report.reason)
        return
    if not ok:
        report.reason = f"forced: {report.reason}"

    with report.stage("fit"):
        model = fit_als(split.full, split.since, None, holdout_model if config.warm_start_iterations else None)
        popular = PopularRecommender().fit(split.full)
    with report.stage("save"):  # the artifact first: a served version always has one
        model.save(settings.model_dir / report.version)
    with report.stage("publish"):
        sizes = publish.ListSizes(config.n_recs, config.n_similar, config.n_popular, config.batch_users)
        report.timings.update(publish.publish_version(
            conn, report.version, split.full, model, popular, films.as_mapping(), _meta(report), sizes, progress))
    report.status, report.published = "published", True
    try:  # housekeeping: artifacts of finished versions Redis no longer keeps; the next run retries
        artifacts.prune_model_dirs(conn, settings.model_dir)
    except (OSError, redis.RedisError):
        log.exception("[%s] could not prune old model folders in %s", report.version, settings.model_dir)


def _window_start(settings: Settings, config: RetrainConfig) -> float | None:
    """Start of the training window, counted back from the newest event, not the wall
    clock: an imported history such as MovieLens is years old."""
    if config.window_days is None:
        return None
    newest = newest_event_ts(settings)
    return newest - config.window_days * DAY_S if newest is not None else None


def _split(interactions: Interactions, since: float | None, weights: EventWeights, config: RetrainConfig) -> Split:
    """Train before the holdout, test after it (a fixed sample of users), and the whole window."""
    until = holdout_start(interactions, config.holdout_days)
    train, test = time_holdout(interactions, config.holdout_days)
    return Split(since=since, until=until, full=build_dataset(interactions, weights),
                 train=build_dataset(train, weights), test=sample_users(test, config.eval_users))


def _meta(report: RunReport) -> dict[str, object]:
    """What readers of the version (the web, `cinerec models`) learn about it."""
    return {
        "version": report.version,
        "trained_at": report.started_at.isoformat(),
        "metrics": report.metrics,
        "baseline_metrics": report.baseline_metrics,
        "n_users": report.n_users,
        "n_items": report.n_items,
        "n_interactions": report.n_interactions,
        "params": report.params,
        "reason": report.reason,
    }
