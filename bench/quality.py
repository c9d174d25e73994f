"""Offline quality benchmark: every first-level model, parameters chosen by the product's own tuning.

    .venv/bin/python bench/quality.py [--data DIR] [--trials N] [--no-grid] [--no-sim]

Datasets: ml-latest-small as `cinerec import-movielens` turns it into events
(play + complete + rate per rating; genres from movies.csv), and the product
simulator (10,000 users, 2,000 films, 1M events over 60 days; film events
only, as the trainer loads them). Protocols: P1 = each user's last 20% of
events; P2 = the globally last 10% of events. Relevance: a test film the
user's training part does not hold (films unknown to training dropped);
K = 10.

Per dataset x protocol, in one run:

* the product's tuning (`app.recsys.tuning.search.tune`, default trial count,
  seeded) on the training part only: it picks the ALS weighting and params and
  EASE's lambda on each user's last 20% of the training part. The test part
  is read once per model, to score it. The tuning's time cap is lifted (it
  depends on the machine's load; the trial count is the bound here);
* rows: Popular, plain implicit ALS (implicit's defaults on the binary matrix:
  the baseline), the self-tuned ALS, EASE (tuned lambda, top 5,000 films),
  item-kNN (cosine, 200 neighbours), the FM (the retrain's configuration:
  at most 2,000 users trained, the rest folded in). The item-item model the
  product prefers is the one with the better validation NDCG@10 (printed);
* `--grid` (default on): the ALS grid tuned on the TEST part (bench only, it
  never feeds the product): the self-tuned ALS's NDCG@10 as a share of the
  grid's best, target >= 0.97.

* the two-level model (docs/ranking.md) built as the retrain builds it
  (app.recsys.training.two_level): candidates from the self-tuned ALS,
  item-kNN, popular, trending and similar-to-recent; its LightGBM ranker
  learns on a label slice carved from the TRAINING part only (per user for P1,
  the newest events grown back to GATE_MIN_USERS users for P2, as the retrain
  does); its NDCG@10 is printed as a share of the best single model's with the
  95% paired bootstrap interval, target >= 1.05. Beside it, the same model
  without the item-item source (what the retrain built before).

Data checks: ratings.csv / movies.csv are read by the product's importer
(`app.movielens`), which refuses malformed lines with their line number;
ratings of films missing from movies.csv are dropped and counted.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable

import numpy as np
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app import movielens  # noqa: E402
from app.recsys.data.dataset import Dataset, EventWeights, Interactions, build_dataset  # noqa: E402
from app.recsys.data.load import Films  # noqa: E402
from app.recsys.evaluation.bootstrap import paired_bootstrap  # noqa: E402
from app.recsys.evaluation.evaluate import Evaluation, Holdout, evaluate_on  # noqa: E402
from app.recsys.evaluation.splits import per_user_last_fraction  # noqa: E402
from app.recsys.models.base import Recommender, binary  # noqa: E402
from app.recsys.models.popularity import PopularRecommender  # noqa: E402
from app.recsys.models.registry import ModelSpec  # noqa: E402
from app.recsys.models.topn import pad_ranked  # noqa: E402
from app.recsys.ranking import stage as two_level_stage  # noqa: E402
from app.recsys.ranking.twolevel import NAME as TWO_LEVEL, TwoLevelConfig  # noqa: E402
from app.recsys.training import two_level  # noqa: E402
from app.recsys.training.run import RetrainConfig  # noqa: E402
from app.recsys.tuning.search import Budget, TuneConfig, TuneResult, tune  # noqa: E402
from app.recsys.tuning.space import ALSPoint, ease_spec  # noqa: E402
from app.recsys.tuning.validation import ValidationSplit  # noqa: E402
from app.schema import FILM_EVENT_TYPES  # noqa: E402
from app.settings import Settings  # noqa: E402

DEFAULT_DATA = movielens.DEFAULT_DIR
K = 10
SHOWN = ("ndcg", "recall", "map", "coverage", "novelty")
SIM = {"users": 10_000, "films": 2_000, "events": 1_000_000, "days": 60.0, "seed": 0, "end": 1_750_000_000.0}
EASE_ITEMS = 5_000
# The test-tuned grid, in the tuning's coordinates (bench only).
GRID_ALPHA = (0.3, 1.0, 3.0, 10.0, 30.0)
GRID_RHO = (2.0, 6.0, 20.0)
GRID_FACTORS = (32, 128)
GRID_WEIGHTING = ((0.0, "default"), (3.0, "default"), (2.0, "binary"))  # (rating exponent, weighting)


class DataError(ValueError):
    """The MovieLens files are not what the benchmark expects."""


@dataclass
class Problem:
    """One dataset x protocol: the training and test events, the relevance, the films' genres."""

    name: str
    train: Interactions
    test: Interactions
    genres: Films
    label_rule: str  # the two-level ranker's label slice, like the protocol (app.recsys.ranking.labels)
    base: Dataset = field(init=False)
    holdout: Holdout = field(init=False)
    _built: dict[str, Dataset] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.base = self.dataset(EventWeights())
        self.holdout = Holdout.from_split(self.base, self.test)

    def dataset(self, weights: EventWeights) -> Dataset:
        """The training matrix under `weights` (same users and films for every weighting)."""
        key = repr(sorted(weights.params().items()))
        if key not in self._built:
            self._built[key] = build_dataset(self.train, weights)
        return self._built[key]

    def score(self, model: Recommender) -> Evaluation:
        """Metrics@K (and per-user NDCG) of a model fitted on the training part (seen films filtered)."""
        return evaluate_on(model, self.base, self.holdout, K)


class PlainImplicitALS:
    """The baseline: implicit's ALS with its default parameters on the binary matrix."""

    name = "plain implicit ALS"

    def fit(self, dataset: Dataset) -> PlainImplicitALS:
        self.users, self.items, self.history = dataset.users, dataset.items, binary(dataset.matrix)
        with threadpool_limits(1, "blas"):
            self.model = AlternatingLeastSquares(random_state=0)
            self.model.fit(self.history, show_progress=False)
        return self

    def recommend(self, user_indices: np.ndarray, n: int, seen: sp.csr_matrix | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
        with threadpool_limits(1, "blas"):
            ids, scores = self.model.recommend(user_indices, self.history[user_indices], N=n)
        return pad_ranked(ids, scores, n)


Row = Callable[[Problem, TuneResult], Recommender]


def _tuned_als(problem: Problem, tuned: TuneResult) -> Recommender:
    spec = tuned.als.spec(tuned.span_days)
    return spec.build().fit(problem.dataset(spec.weights))


def _fm(problem: Problem, tuned: TuneResult) -> Recommender:
    spec = ModelSpec.of("fm", {"max_users": RetrainConfig().fm_max_users})
    return spec.build().fit(problem.base, problem.genres.genre_matrix(problem.base.items)[0])


def _two_level(problem: Problem, tuned: TuneResult, item_item: bool = True) -> Recommender:
    """The two-level model as the retrain builds it (app.recsys.training.two_level): the self-tuned ALS and
    item-kNN as sources, its ranker taught on a slice of the training part. `item_item=False`: ALS,
    popular, trending and similar-to-recent (from ALS's similar films) only, as before item-kNN was a source."""
    spec = tuned.als.spec(tuned.span_days)
    sources = two_level.Sources.of(spec)
    if not item_item:
        sources = two_level.Sources({spec.name: spec})
    config = TwoLevelConfig(label_rule=problem.label_rule)
    stage = two_level.fit_stage(sources, problem.train, spec.weights, Settings.from_env({}).gate_min_users, 0.2,
                                config)
    train = problem.dataset(spec.weights)
    return two_level_stage.build(stage, problem.train, train, problem.train.max_ts + 1.0, sources.fit(train),
                                 problem.genres, config).model


ROWS: dict[str, Row] = {
    "Popular": lambda p, t: PopularRecommender().fit(p.base),
    PlainImplicitALS.name: lambda p, t: PlainImplicitALS().fit(p.base),
    "self-tuned ALS": _tuned_als,
    "EASE": lambda p, t: ease_spec(t.ease_regularization, EASE_ITEMS).build().fit(p.base),
    "item-kNN": lambda p, t: ModelSpec.of("item_knn").build().fit(p.base),
    "FM": _fm,
    "two-level, no item-item": lambda p, t: _two_level(p, t, item_item=False),
    TWO_LEVEL: _two_level,
}
BASELINE = PlainImplicitALS.name


def load_ml(directory: Path) -> tuple[Interactions, Films, int]:
    """(ratings as the import's play/complete/rate events, the catalog's genres, ratings of unknown films)."""
    for name in ("ratings.csv", "movies.csv"):
        if not (directory / name).is_file():
            raise DataError(f"{directory / name} not found (expected the ml-latest-small folder; use --data DIR)")
    try:
        films = movielens.read_movies(directory / "movies.csv")
        ratings, _ = movielens.importable(movielens.read_ratings(directory / "ratings.csv"))
    except movielens.MovieLensError as exc:
        raise DataError(str(exc)) from None
    known = {row[0] for row in films}
    kept = [r for r in ratings if r.movie_id in known]
    events = [e for r in kept for e in movielens.rating_events(r)]
    columns = {name: [getattr(e, name) or 0 for e in events] for name in
               ("user_id", "film_id", "ts", "watch_seconds", "duration_seconds", "rating")}
    columns["event_type"] = [e.event_type for e in events]
    catalog = Films(np.array([row[0] for row in films]), [row[1] for row in films], [row[2] for row in films])
    return Interactions.from_columns(columns), catalog, len(ratings) - len(kept)


def load_sim() -> tuple[Interactions, Films]:
    """The simulator's events, film events only (what the trainer loads), and its catalog's genres."""
    from app.simulate import generate
    from app.simulator.world import GENRES

    world, history = generate(SIM["users"], SIM["films"], SIM["events"], SIM["seed"], SIM["days"], SIM["end"])
    events = Interactions.from_columns({f.name: getattr(history, f.name) for f in fields(Interactions)})
    events = events.select(np.isin(history.event_type, sorted(FILM_EVENT_TYPES)) & (history.film_id != 0))
    cat = world.catalog
    genres = [[GENRES[g] for g in np.flatnonzero(cat.genre_weights[i])] for i in range(len(cat.film_ids))]
    return events, Films(cat.film_ids, [""] * len(cat.film_ids), genres)


def protocols(events: Interactions) -> dict[str, tuple[Interactions, Interactions, str]]:
    """P1: each user's last 20% of events; P2: the globally last 10% of events (with the two-level
    model's label rule for each)."""
    newest_tenth = float(np.quantile(events.ts, 0.9))
    return {"P1": (*per_user_last_fraction(events, 0.2), "per_user"),
            "P2": (*events.split_by_time(newest_tenth), "auto")}


def oracle(problem: Problem) -> tuple[ALSPoint, Evaluation | None, int]:
    """The ALS grid scored on the TEST part (bench only): (best point, its evaluation, grid size)."""
    best, best_eval, size = ALSPoint(), None, 0
    for alpha in GRID_ALPHA:
        for rho in GRID_RHO:
            for factors in GRID_FACTORS:
                for exponent, weighting in GRID_WEIGHTING:
                    point = ALSPoint(alpha=alpha, rho=rho, factors=factors, rating_exponent=exponent,
                                     weighting=weighting)
                    spec = point.spec(0.0)
                    scored = problem.score(spec.build().fit(problem.dataset(spec.weights)))
                    size += 1
                    if best_eval is None or scored.metrics[f"ndcg@{K}"] > best_eval.metrics[f"ndcg@{K}"]:
                        best, best_eval = point, scored
    return best, best_eval, size


def ratio_interval(a: Evaluation, b: Evaluation) -> str:
    """NDCG@K of `a` over `b`'s on the same users, with the 95% paired bootstrap interval (over users)
    of the difference, expressed as that ratio: few test users give a wide interval."""
    diff = paired_bootstrap(a.ndcg, b.ndcg)
    base = float(np.mean(b.ndcg))
    return (f"{float(np.mean(a.ndcg)) / base:.3f} [95% {1 + diff.low / base:.3f}, {1 + diff.high / base:.3f}] "
            f"on {diff.users} users")


def run(problem: Problem, trials: int, grid: bool) -> dict[str, object]:
    """Tune on the training part, fit and score every row; the item-item pick and the grid."""
    started = time.perf_counter()
    tuned = tune(problem.train, TuneConfig(trials=trials), Budget(0.5, rest_s=math.inf, full_pairs=0))
    tune_s = time.perf_counter() - started
    results, seconds = {}, {}
    for name, build in ROWS.items():
        fit_started = time.perf_counter()
        results[name] = problem.score(build(problem, tuned))  # every weighting has the same users and films
        seconds[name] = time.perf_counter() - fit_started
    validation = ValidationSplit.carve(problem.train)  # the tuning's own split (same seed)
    item_item = {"EASE": validation.score(ease_spec(tuned.ease_regularization, EASE_ITEMS)),
                 "item-kNN": validation.score(ModelSpec.of("item_knn"))}
    out: dict[str, object] = {"tuned": tuned, "tune_s": tune_s, "results": results, "seconds": seconds,
                              "item_item_validation": item_item}
    if grid:
        out["oracle"] = oracle(problem)
    return out


def report(problem: Problem, out: dict[str, object]) -> float | None:
    """Print one problem's table; returns self-tuned / grid-best NDCG@10 (None without the grid)."""
    tuned: TuneResult = out["tuned"]
    scored: dict[str, Evaluation] = out["results"]
    results = {name: evaluation.metrics for name, evaluation in scored.items()}
    print(f"\n=== {problem.name}: {len(problem.train):,} training events, {len(problem.holdout)} test users, "
          f"{len(problem.base.items):,} films")
    print(f"tuning ({out['tune_s']:.0f}s, {len(tuned.trials)} trials on {tuned.users} users, validation on the "
          f"training part only): ALS {tuned.als.params()} validation NDCG@10 {tuned.als_value:.4f}; "
          f"EASE lambda {tuned.ease_regularization:g}")
    header = f"{'model':<22}" + "".join(f"{m + '@' + str(K):>14}" for m in SHOWN) + f"{'fit+score s':>13}"
    print(header + "\n" + "-" * len(header))
    for name, metrics in results.items():
        print(f"{name:<22}" + "".join(f"{metrics[f'{m}@{K}']:>14.4f}" for m in SHOWN)
              + f"{out['seconds'][name]:>13.1f}")
    base = results[BASELINE]
    print(f"ratios vs the baseline ({BASELINE}, same run): " + "; ".join(
        f"{name} NDCG x{m[f'ndcg@{K}'] / base[f'ndcg@{K}']:.2f}" for name, m in results.items() if name != BASELINE))
    single = max((n for n in results if not n.startswith(TWO_LEVEL)), key=lambda n: results[n][f"ndcg@{K}"])
    for name in (n for n in results if n.startswith(TWO_LEVEL)):
        print(f"{name} / best single model ({single}) NDCG@10 = {ratio_interval(scored[name], scored[single])}"
              " (target >= 1.05 for the two-level model)")
    validation = out["item_item_validation"]
    pick = max(validation, key=validation.get)
    print(f"item-item pick by validation NDCG@10: {pick} ({', '.join(f'{k} {v:.4f}' for k, v in validation.items())});"
          f" on the test: EASE {results['EASE'][f'ndcg@{K}']:.4f}, item-kNN {results['item-kNN'][f'ndcg@{K}']:.4f}")
    if "oracle" not in out:
        return None
    point, best, size = out["oracle"]
    best_ndcg = best.metrics[f"ndcg@{K}"]
    print(f"ALS grid tuned on the TEST ({size} configs, bench only): best NDCG@10 {best_ndcg:.4f} at {point.params()}; "
          f"self-tuned / grid = {ratio_interval(scored['self-tuned ALS'], best)} (target >= 0.97)")
    return results["self-tuned ALS"][f"ndcg@{K}"] / best_ndcg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="ml-latest-small folder (read only)")
    parser.add_argument("--trials", type=int, default=Settings.from_env({}).tune_trials,
                        help="tuning trials (default: the product's TUNE_TRIALS default)")
    parser.add_argument("--no-grid", dest="grid", action="store_false", help="skip the test-tuned ALS grid")
    parser.add_argument("--no-sim", dest="sim", action="store_false", help="MovieLens only")
    args = parser.parse_args(argv)

    try:
        ml, ml_films, dropped = load_ml(args.data)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"ml-latest-small: {len(ml):,} events ({dropped} rating(s) of films not in movies.csv dropped), "
          f"{len(np.unique(ml.user_id))} users; machine load {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    datasets = {"ml": (ml, ml_films)}
    if args.sim:
        datasets["sim"] = load_sim()
    ratios = {}
    for data_name, (events, films) in datasets.items():
        for protocol, (train, test, label_rule) in protocols(events).items():
            problem = Problem(f"{data_name} {protocol}", train, test, films, label_rule)
            ratios[problem.name] = report(problem, run(problem, args.trials, args.grid))
    if args.grid:
        print("\nself-tuned ALS / ALS grid tuned on the test: " + ", ".join(
            f"{name} {ratio:.3f}" for name, ratio in ratios.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
