"""The retrain run, stage by stage: load -> split -> lists -> tune -> label-split -> evaluate -> first-level
-> two-level -> gate -> fit -> save -> publish (-> rollout) -> record.

Plain Python (no Celery): the Celery task, `cinerec train` and the benchmarks
all call `retrain`. Storage is reached only through its adapters (the run
record: app.storage.model_runs; Redis: `publish`); the retrain lock is the
caller's (app.storage.locks), taken around the whole run. The run writes its
model into its own folder, claimed for its whole life (`artifacts`).

The tuning searches the weighting and the models' parameters on a validation
split of the training part only (app/recsys/tuning), never on the gate's
holdout. The challenger is a `ModelSpec` (the tuned ALS unless `config.model`
names another); evaluation and the gate only need a fitted model of it, so any
registered model can take its place. A two-level model (ALS and other
first-level sources, ranked by LightGBM) is built on top of the same holdout
models and competes with the best single model on the same holdout users; it
ships only when it is shown better (`gate.choose`, docs/ranking.md), and
whichever ships then faces the gate. The
served model is judged by refitting its recorded spec on the same split:
scoring the served artifact itself would be unfair, as it has trained on
part of this holdout. The popular and trending lists are published whatever
the gate decides. A rejected or failed run leaves `recs:current` alone and is
still recorded, with the gate's evidence and reason, so operators can see why
nothing changed. A published version is served at once unless the rollout
policy (ROLLOUT=experiment while a version is served, app.experiments.rollout)
or `config.switch=False` says otherwise; the `rollout` stage then starts its
experiment, and the run's reason says what happened.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import redis
from threadpoolctl import threadpool_limits

from app.experiments import rollout
from app.recsys.data.dataset import DAY_S, Dataset, EventWeights, Interactions, build_dataset
from app.recsys.data.load import Films, load_films, load_interactions, newest_event_ts
from app.recsys.evaluation.evaluate import Evaluation, Holdout, evaluate_on
from app.recsys.evaluation.gate import Choice, Verdict, choose, decide
from app.recsys.evaluation.splits import HoldoutCut, fixed_holdout, grow_holdout, sample_users
from app.recsys.models.als import ALSRecommender
from app.recsys.models.base import Recommender
from app.recsys.models.ease import DEFAULT_REGULARIZATION as EASE_REGULARIZATION
from app.recsys.models.fm import FMRecommender
from app.recsys.models.itemknn import ItemKNNRecommender
from app.recsys.models.popularity import PopularRecommender, TrendingRecommender
from app.recsys.models.registry import ModelSpec
from app.recsys.progress import Progress, no_progress
from app.recsys.ranking import stage as two_level_stage
from app.recsys.ranking.online import RequestRanker
from app.recsys.ranking.twolevel import NAME as TWO_LEVEL, TwoLevelRecommender
from app.recsys.training import artifacts, publish, two_level
from app.recsys.training.first_level import FirstLevel, fit_first_level
from app.recsys.training.fitters import Fit, fitter
from app.recsys.training.run import RetrainConfig, RunReport
from app.recsys.tuning.search import Budget, TuneConfig, TuneResult, previous_point, tune
from app.recsys.tuning.space import ease_spec
from app.settings import Settings
from app.storage import model_runs
from app.storage import redis_keys as keys
from app.storage.clickhouse import client as clickhouse_client
from app.storage.redis_client import connect

log = logging.getLogger(__name__)


@dataclass
class Split:
    """The window's events, the holdout cut, and their matrices under any weighting (built once each)."""

    since: float | None  # window start
    until: float  # holdout start
    cut: HoldoutCut | None  # how the holdout was chosen; None: no data
    events: Interactions  # the whole window
    train_events: Interactions  # [since, until)
    test: Interactions  # [until, newest], at most `eval_users` users
    _built: dict[tuple[str, str], Dataset] = field(default_factory=dict, repr=False)

    def full(self, weights: EventWeights) -> Dataset:
        """The whole window's matrix."""
        return self._dataset("full", self.events, weights)

    def train(self, weights: EventWeights) -> Dataset:
        """The matrix of the part before the holdout."""
        return self._dataset("train", self.train_events, weights)

    def _dataset(self, part: str, events: Interactions, weights: EventWeights) -> Dataset:
        key = _dataset_key(part, weights)
        if key not in self._built:
            self._built[key] = build_dataset(events, weights)
        return self._built[key]


def _dataset_key(part: str, weights: EventWeights) -> tuple[str, str]:
    return part, json.dumps(weights.params(), sort_keys=True)  # EventWeights holds a dict: not hashable


@dataclass(frozen=True)
class Scores:
    """The challenger and Popular fitted on the train part, per-user NDCG on the holdout."""

    holdout: Holdout
    model: Recommender
    popular_model: PopularRecommender
    challenger: Evaluation
    popular: Evaluation
    served: np.ndarray | None  # None: nothing served, or its spec cannot be refitted


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
              fitter(settings, config.warm_start_iterations) as fit):
            _run(settings, config, progress, report, conn, fit)
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
         conn: redis.Redis, fit: Fit) -> None:
    """The stages in order; returns early (report rejected) when one says stop."""
    report.params = {"config": config.params(), "backend": settings.train_backend}
    report.served_before = publish.current_version(conn)
    served_meta = (publish.read_meta(conn, report.served_before) or {}) if report.served_before else None

    with report.stage("load"):
        since = _window_start(settings, config)
        interactions = load_interactions(settings, since=since, progress=progress)
        films = load_films(settings)
    with report.stage("split"):
        split = _split(settings, config, interactions, since)
        everything = split.full(EventWeights())  # which pairs exist does not depend on the weighting
    report.holdout = split.cut
    report.n_users, report.n_items = len(everything.users), len(everything.items)
    report.n_interactions = len(interactions)
    if not everything.matrix.nnz:
        report.reject("no interactions in the training window")
        return
    with report.stage("lists"):  # whatever the gate says: nobody gets an empty list while there is data
        popular = PopularRecommender().fit(everything)
        publish.publish_lists(conn, everything.items, popular, TrendingRecommender().fit(everything),
                              config.n_popular, films.as_mapping())
    train_pairs = int(np.count_nonzero(everything.first_ts < split.until))  # pairs begun before the holdout
    if not train_pairs:
        report.reject("no events before the holdout: nothing to train a model on for the gate")
        return

    with report.stage("tune"):
        spec, ease, tuned = _tune(settings, config, split, train_pairs, progress)
    report.params = {**spec.record(), "tuning": tuned.record() if tuned else None, **report.params}
    sources, stage = two_level.Sources.of(spec), None
    if config.two_level is not None and spec.name == ALSRecommender.name:  # first: the holdout ALS starts from it
        with report.stage("label-split"):
            stage = _stage(settings, config, sources, split, report)
    with report.stage("evaluate"):
        scores = _evaluate(fit, spec, split, served_meta, config, stage)
    report.baseline_metrics = scores.popular.metrics
    report.models = {**report.models, spec.name: scores.challenger.metrics}
    first_level = None
    if spec.name == ALSRecommender.name:
        with report.stage("first-level"):
            first_level = _first_level(config, ease, scores, split.train(spec.weights), films)
        report.first_level = first_level.record()
    two = None
    if stage is not None:
        with report.stage("two-level"):
            fitted = {**(first_level.models if first_level else {}), spec.name: scores.model}
            two = _two_level(config, sources, split, stage, scores, fitted, films, report)
    with report.stage("gate"):
        choice = choose(two.evaluation.ndcg if two else None, {spec.name: scores.challenger.ndcg},
                        always=config.two_level is not None and config.two_level.always_ship)
        shipped = two.evaluation if choice.shipped == TWO_LEVEL else scores.challenger
        verdict = decide(shipped.ndcg, scores.popular.ndcg, two_level.served_ndcg(scores.served, two, served_meta),
                         config.gate,
                         name=choice.shipped.upper(), serving=served_meta is not None)
    report.metrics, report.shipped, report.vs_single = shipped.metrics, choice.shipped, choice.vs_single
    if choice.shipped == TWO_LEVEL:
        report.params = {**report.params, "model": TWO_LEVEL, TWO_LEVEL: two.built.model.params()}
    _judge(report, verdict, config.force, choice)
    if report.status == "rejected":
        return

    full = split.full(spec.weights)
    with report.stage("fit"):
        warm = scores.model if config.warm_start_iterations else None
        model = fit(spec, full, split.since, None, warm)
        if choice.shipped == TWO_LEVEL:  # the same ranker over the first level refitted on everything
            model = two_level.final(two, model, full, interactions, films, config.two_level)
    with report.stage("save"):  # the artifact first: a served version always has one
        model.save(settings.model_dir / report.version)
    serve = config.switch and rollout.switches_at_once(settings, report.served_before)
    with report.stage("publish"):
        sizes = publish.ListSizes(config.n_recs, config.n_similar, config.n_popular, config.batch_users)
        extra = {keys.ranking(report.version): RequestRanker.of(model).pack()} if isinstance(
            model, TwoLevelRecommender) else {}
        report.timings.update(publish.publish_version(
            conn, report.version, full, model, popular, _meta(report), sizes, progress, switch=serve,
            extra=extra))
    report.status, report.published = "published", True
    if not serve:
        with report.stage("rollout"):
            report.reason = f"{report.reason}; {_roll_out(settings, config, report, conn)}"
    try:  # housekeeping: artifacts of finished versions Redis no longer keeps; the next run retries
        artifacts.prune_model_dirs(conn, settings.model_dir)
    except (OSError, redis.RedisError):
        log.exception("[%s] could not prune old model folders in %s", report.version, settings.model_dir)


def _roll_out(settings: Settings, config: RetrainConfig, report: RunReport, conn: redis.Redis) -> str:
    """The rollout hook for a version published without the switch: under ROLLOUT=experiment,
    start its experiment against the served version (app.experiments.rollout). Returns what happened."""
    if not config.switch:
        return (f"published without switching (asked): serve it with `cinerec experiment start --challenger "
                f"{report.version}` or `cinerec rollback {report.version}`")
    ch = clickhouse_client(settings)
    try:
        return rollout.after_publish(ch, conn, settings, report.version, report.served_before,
                                     datetime.now(timezone.utc))
    finally:
        ch.disconnect()


def _window_start(settings: Settings, config: RetrainConfig) -> float | None:
    """Start of the training window, counted back from the newest event, not the wall
    clock: an imported history such as MovieLens is years old."""
    if config.window_days is None:
        return None
    newest = newest_event_ts(settings)
    return newest - config.window_days * DAY_S if newest is not None else None


def _split(settings: Settings, config: RetrainConfig, interactions: Interactions, since: float | None) -> Split:
    """Train before / test from the holdout start (grown, or fixed days)."""
    full = build_dataset(interactions, EventWeights())
    if config.holdout_days is None:
        cut = grow_holdout(full, interactions, settings.gate_min_users, settings.gate_max_holdout_share)
    else:
        cut = fixed_holdout(full, interactions, config.holdout_days)
    until = cut.start if cut else interactions.max_ts
    train, test = interactions.split_by_time(until)
    limit = None if config.eval_users is None else max(config.eval_users, settings.gate_min_users)
    return Split(since=since, until=until, cut=cut, events=interactions, train_events=train,
                 test=sample_users(test, limit), _built={_dataset_key("full", EventWeights()): full})


def _tune(settings: Settings, config: RetrainConfig, split: Split, train_pairs: int,
          progress: Progress) -> tuple[ModelSpec, ModelSpec, TuneResult | None]:
    """(ALS spec, EASE spec, the search) tuned on the training part, starting from the last finished
    run's winner; with `config.tune` off, `config.als` on the default weighting and EASE's default."""
    if config.model != ALSRecommender.name:  # e.g. Popular as a version of its own: nothing to tune
        return ModelSpec.of(config.model), ease_spec(EASE_REGULARIZATION, _EASE_ITEMS), None
    if not config.tune:
        return ModelSpec.of(ALSRecommender.name, config.als), ease_spec(EASE_REGULARIZATION, _EASE_ITEMS), None
    last = model_runs.last_finished(settings)
    tune_config = TuneConfig(trials=config.tune_trials or settings.tune_trials,
                             time_share=config.tune_time_share or settings.tune_time_share,
                             ease_trial_items=min(TuneConfig.ease_trial_items, _EASE_ITEMS))
    rest = last["seconds"] - last["timings"].get("tune", 0.0) if last else None
    result = tune(split.train_events, tune_config, Budget(tune_config.time_share, rest, train_pairs),
                  previous_point(last["params"]) if last else None, progress)
    return result.als.spec(result.span_days), ease_spec(result.ease_regularization, _EASE_ITEMS), result


_EASE_ITEMS = 5_000  # EASE is fitted on this many of the most-viewed films (app/recsys/models/ease.py)


def _evaluate(fit: Fit, spec: ModelSpec, split: Split, served_meta: dict | None, config: RetrainConfig,
              stage: two_level_stage.Stage | None) -> Scores:
    """The challenger, Popular and the served model's spec, fitted on the train part and scored per user.

    With a two-level stage the challenger starts from the stage's model (fitted on less, never on
    the holdout) and runs the warm-start iterations: one full fit serves both levels.
    """
    train = split.train(spec.weights)
    holdout = Holdout.from_split(train, split.test, spec.weights)
    warm = stage.models.get(spec.name) if stage is not None and config.warm_start_iterations else None
    model = fit(spec, train, split.since, split.until, warm)
    challenger = evaluate_on(model, train, holdout, config.k)
    popular_model = PopularRecommender().fit(train)
    popular = evaluate_on(popular_model, train, holdout, config.k)
    served_spec = ModelSpec.from_record(served_meta.get("params", {})) if served_meta is not None else None
    if served_spec is None:
        served = None
    elif served_spec == spec:  # the same spec on the same data: the same model
        served = challenger.ndcg
    else:
        served_train = split.train(served_spec.weights)
        served_model = fit(served_spec, served_train, split.since, split.until, None)
        served = evaluate_on(served_model, served_train, holdout, config.k).ndcg
    return Scores(holdout, model, popular_model, challenger, popular, served)


def _first_level(config: RetrainConfig, ease: ModelSpec, scores: Scores, train: Dataset,
                 films: Films) -> FirstLevel:
    """The first-level models on the train part and their holdout figures (ALS and Popular as evaluated)."""
    specs = {}
    if "ease" in config.first_level:
        specs["ease"] = ease
    if "item_knn" in config.first_level:
        specs["item_knn"] = ModelSpec.of(ItemKNNRecommender.name)
    if "fm" in config.first_level:
        specs["fm"] = ModelSpec.of(FMRecommender.name, {"max_users": config.fm_max_users})
    fitted = {"als": scores.model, "popular": scores.popular_model, "trending": TrendingRecommender().fit(train)}
    return fit_first_level(train, specs, fitted, films.genre_matrix(train.items)[0], scores.holdout)


def _stage(settings: Settings, config: RetrainConfig, sources: two_level.Sources, split: Split,
           report: RunReport) -> two_level_stage.Stage | None:
    """The label slice of the train part and the sources fitted before it; None (recorded) when
    the slice teaches nobody. In-process whatever the backend (a per-user slice is no time window)."""
    assert config.two_level is not None
    try:
        return two_level.fit_stage(sources, split.train_events, sources.specs[ALSRecommender.name].weights,
                                   settings.gate_min_users, settings.gate_max_holdout_share, config.two_level)
    except ValueError as exc:  # e.g. a train part too small to cut
        log.warning("[%s] no two-level challenger this run: %s", report.version, exc)
        report.models[TWO_LEVEL] = {"skipped": str(exc)}
        return None


def _two_level(config: RetrainConfig, sources: two_level.Sources, split: Split, stage: two_level_stage.Stage,
               scores: Scores, fitted: dict[str, Recommender], films: Films,
               report: RunReport) -> two_level.TwoLevel | None:
    """The two-level challenger over the holdout models (`fitted`), scored on the same holdout; None
    (recorded) when the label slice gives nothing to learn from."""
    assert config.two_level is not None
    train = split.train(sources.specs[ALSRecommender.name].weights)
    try:
        two = two_level.challenger(sources, stage, split.train_events, train, split.until, fitted, scores.holdout,
                                   films, config.k, config.two_level)
    except ValueError as exc:  # e.g. no label user with a positive candidate
        log.warning("[%s] no two-level challenger this run: %s", report.version, exc)
        report.models[TWO_LEVEL] = {"skipped": str(exc)}
        return None
    report.models[TWO_LEVEL] = {**two.evaluation.metrics, **two.built.record(), "recall@100": two.recall}
    return two


def _judge(report: RunReport, verdict: Verdict, force: bool, choice: Choice) -> None:
    """Record the gate's verdict (after why this candidate); reject the run unless it passes (or is forced)."""
    report.verdict, report.reason = verdict.outcome, f"{choice.reason}; {verdict.reason}"
    report.vs_popular, report.vs_served = verdict.vs_popular, verdict.vs_served
    log.info("[%s] gate: %s, %s (%s)", report.version, verdict.outcome, "publish" if verdict.publish else "REJECT",
             verdict.reason)
    if not verdict.publish and not force:
        report.reject(report.reason)
    elif not verdict.publish:
        report.reason = f"forced: {report.reason}"


def _meta(report: RunReport) -> dict[str, object]:
    """What readers of the version (the web, `cinerec models`, the next run's gate) learn about it."""
    return {
        "version": report.version,
        "trained_at": report.started_at.isoformat(),
        "metrics": report.metrics,
        "baseline_metrics": report.baseline_metrics,
        "verdict": report.verdict,
        "vs_popular": report.vs_popular.as_dict() if report.vs_popular else None,
        "shipped": report.shipped,
        "n_users": report.n_users,
        "n_items": report.n_items,
        "n_interactions": report.n_interactions,
        "params": report.params,
        "reason": report.reason,
    }
