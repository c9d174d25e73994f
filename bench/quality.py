"""Offline quality benchmark on MovieLens ml-latest-small: ALS and Popular vs a plain `implicit` ALS.

    .venv/bin/python bench/quality.py [--data DIR] [--tune]

Protocol: every rating is an interaction (a `rate` event, rating = stars x 2,
our 1..10 scale); the holdout is each user's last 20% of ratings by time (at
least one); K = 10; test films the training part never saw are dropped.

Baseline, measured in the same run: `implicit.cpu.als.AlternatingLeastSquares`
with its default parameters, fit on the binary matrix, recommending through
its own API. Printed ratios are model / baseline.

--tune: a two-stage grid (rating exponent x alpha x regularization at 32
factors, then factors x iterations at the best of those) scored by NDCG@10 on
a validation split carved from TRAIN only (each user's last 20% of the
training ratings); the test part is touched once, by the chosen model. The
defaults of ALSRecommender / EventWeights are the result of this run.

Data checks: lines that are not `userId,movieId,rating,timestamp` with a
rating in 0.5..5 are refused with their line number; ratings of films missing
from movies.csv are dropped and counted.
"""
from __future__ import annotations

import argparse
import csv
import itertools
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.recsys.data.dataset import Dataset, EventWeights, Interactions, build_dataset  # noqa: E402
from app.recsys.data.load import Films  # noqa: E402
from app.recsys.evaluation.evaluate import Holdout, evaluate, evaluate_on  # noqa: E402
from app.recsys.evaluation.splits import last_share_by_time, per_user_last_fraction  # noqa: E402
from app.recsys.models.als import ALSRecommender  # noqa: E402
from app.recsys.models.popularity import PopularRecommender  # noqa: E402
from app.recsys.models.topn import pad_ranked  # noqa: E402
from app.recsys.ranking import stage as two_level_stage  # noqa: E402
from app.recsys.ranking.twolevel import TwoLevelConfig  # noqa: E402
from app.settings import Settings  # noqa: E402

DEFAULT_DATA = Path("/work/shared/data/ml-latest-small")
K = 10
HOLDOUT_FRACTION = 0.2
SHOWN = ("recall", "ndcg", "map", "hit_rate", "coverage", "novelty")
# Stage 1 at 32 factors / 15 iterations, stage 2 around the stage-1 winner.
GRID_STAGE1 = {"rating_exponent": (0.0, 2.0, 4.0), "alpha": (0.3, 1.0, 3.0), "regularization": (1.0, 10.0, 30.0)}
GRID_STAGE2 = {"factors": (16, 32, 64), "iterations": (10, 15, 30)}


class DataError(ValueError):
    """The MovieLens files are not what the benchmark expects."""


def load_movielens(data_dir: Path) -> tuple[Interactions, int]:
    """(ratings as `rate` events, number of ratings dropped for unknown films)."""
    ratings_path, movies_path = data_dir / "ratings.csv", data_dir / "movies.csv"
    for path in (ratings_path, movies_path):
        if not path.is_file():
            raise DataError(f"{path} not found (expected the ml-latest-small folder; use --data DIR)")
    with movies_path.open(newline="", encoding="utf-8") as f:
        known_films = {int(row["movieId"]) for row in csv.DictReader(f)}
    rows: list[tuple[int, int, float, float]] = []
    with ratings_path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        if next(reader, None) != ["userId", "movieId", "rating", "timestamp"]:
            raise DataError(f"{ratings_path}: unexpected header")
        for line_no, row in enumerate(reader, start=2):
            try:
                user, film, stars, ts = int(row[0]), int(row[1]), float(row[2]), float(row[3])
            except (ValueError, IndexError):
                raise DataError(f"{ratings_path}:{line_no}: cannot parse {row!r}") from None
            if len(row) != 4 or not 0.5 <= stars <= 5.0:
                raise DataError(f"{ratings_path}:{line_no}: not userId,movieId,rating(0.5..5),timestamp: {row!r}")
            rows.append((user, film, stars, ts))
    users, films, stars, ts = (np.array(col) for col in zip(*rows))
    known = np.isin(films, np.fromiter(known_films, dtype=np.int64))
    interactions = Interactions.from_columns(
        {
            "user_id": users[known],
            "film_id": films[known],
            "event_type": np.full(int(known.sum()), "rate"),
            "ts": ts[known],
            "rating": stars[known] * 2.0,
        }
    )
    return interactions, int((~known).sum())


class PlainImplicitALS:
    """The baseline: implicit's ALS, default parameters, binary matrix, its own recommend."""

    name = "plain implicit ALS"

    def fit(self, dataset: Dataset) -> PlainImplicitALS:
        self.binary = dataset.matrix.copy()
        self.binary.data[:] = 1.0
        with threadpool_limits(1, "blas"):
            self.model = AlternatingLeastSquares(random_state=0)
            self.model.fit(self.binary, show_progress=False)
        return self

    def recommend(
        self, user_indices: np.ndarray, n: int, seen: sp.csr_matrix | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """implicit filters the users' training rows itself (what `seen` holds in evaluate)."""
        with threadpool_limits(1, "blas"):
            ids, scores = self.model.recommend(user_indices, self.binary[user_indices], N=n)
        return pad_ranked(ids, scores, n)


@dataclass(frozen=True)
class Candidate:
    """One point of the grid: the weighting and the ALS parameters."""

    rating_exponent: float
    alpha: float
    regularization: float
    factors: int = 32
    iterations: int = 15

    @classmethod
    def defaults(cls) -> Candidate:
        """The shipped defaults of ALSRecommender and EventWeights."""
        als = ALSRecommender().params()
        return cls(
            rating_exponent=EventWeights().rating_exponent,
            alpha=als["alpha"],
            regularization=als["regularization"],
            factors=als["factors"],
            iterations=als["iterations"],
        )

    def model(self) -> ALSRecommender:
        return ALSRecommender(
            factors=self.factors, regularization=self.regularization, alpha=self.alpha, iterations=self.iterations
        )

    def weights(self) -> EventWeights:
        return EventWeights(rating_exponent=self.rating_exponent)


def validation_ndcg(candidate: Candidate, train: Interactions, cache: dict) -> float:
    """NDCG@K of `candidate` on the validation split carved from `train` (datasets cached per exponent)."""
    if candidate.rating_exponent not in cache:
        fit_part, validation = per_user_last_fraction(train, HOLDOUT_FRACTION)
        cache[candidate.rating_exponent] = (build_dataset(fit_part, candidate.weights()), validation)
    dataset, validation = cache[candidate.rating_exponent]
    return evaluate(candidate.model().fit(dataset), dataset, validation, K, candidate.weights())[f"ndcg@{K}"]


def tune(train: Interactions) -> Candidate:
    """Two-stage grid on the validation split; returns the best candidate."""
    cache: dict = {}
    stage1 = [Candidate(**dict(zip(GRID_STAGE1, values))) for values in itertools.product(*GRID_STAGE1.values())]
    scores: dict[Candidate, float] = {}
    for candidate in tqdm(stage1, desc="tune stage 1 (weights, alpha, reg)", unit="fit"):
        scores[candidate] = validation_ndcg(candidate, train, cache)
    best = max(scores, key=scores.get)
    stage2 = [
        Candidate(best.rating_exponent, best.alpha, best.regularization, factors, iterations)
        for factors, iterations in itertools.product(*GRID_STAGE2.values())
    ]
    for candidate in tqdm(stage2, desc="tune stage 2 (factors, iterations)", unit="fit"):
        if candidate not in scores:
            scores[candidate] = validation_ndcg(candidate, train, cache)
    ranked = sorted(scores.items(), key=lambda item: -item[1])
    print(f"\nvalidation NDCG@{K}, best 5 of {len(scores)} (train-only split):")
    for candidate, score in ranked[:5]:
        print(f"  {score:.4f}  {candidate}")
    return ranked[0][0]


def report(results: dict[str, dict[str, float]], baseline: str) -> None:
    header = f"{'model':<28}" + "".join(f"{m + '@' + str(K):>14}" for m in SHOWN)
    print("\n" + header + "\n" + "-" * len(header))
    for name, metrics in results.items():
        print(f"{name:<28}" + "".join(f"{metrics[f'{m}@{K}']:>14.4f}" for m in SHOWN))
    base = results[baseline]
    print(f"\nratios vs baseline ({baseline}, same run):")
    for name, metrics in results.items():
        if name != baseline:
            ratios = ", ".join(f"{m}@{K} x{metrics[f'{m}@{K}'] / base[f'{m}@{K}']:.2f}" for m in ("recall", "ndcg", "map"))
            print(f"  {name:<26} {ratios}")


# ---- The two-level model (issue 11, docs/ranking.md): its own section, both protocols and the simulator ----

TWO_LEVEL_PROTOCOLS = {  # name -> (split, label rule of the ranker: like the protocol)
    "P1 each user's last 20%": (lambda it: per_user_last_fraction(it, HOLDOUT_FRACTION), "per_user"),
    "P2 global last 10% by time": (lambda it: last_share_by_time(it, 0.1), "auto"),
}
SIMULATOR = {"users": 10_000, "films": 2_000, "events": 1_000_000, "days": 60, "seed": 0}


def simulated() -> tuple[Interactions, dict[int, list[str]]]:
    """The product simulator's film events (as the trainer loads them) and its catalog genres."""
    from dataclasses import fields

    from app.schema import FILM_EVENT_TYPES
    from app.simulate import generate

    world, history = generate(SIMULATOR["users"], SIMULATOR["films"], SIMULATOR["events"], SIMULATOR["seed"],
                              SIMULATOR["days"], 1_750_000_000.0)
    events = Interactions.from_columns({f.name: getattr(history, f.name) for f in fields(Interactions)})
    keep = np.isin(history.event_type, sorted(FILM_EVENT_TYPES)) & (history.film_id != 0)
    films = world.catalog
    return events.select(keep), {int(f): films.genres_of(i) for i, f in enumerate(films.film_ids)}


def two_level_rows(interactions: Interactions, genres: dict[int, list[str]], split, rule: str
                   ) -> tuple[dict[str, dict[str, float]], dict[str, object]]:
    """Popular, ALS (the shipped defaults) and the two-level model over that ALS, one split, one run.

    The ranker learns on a label slice carved from TRAIN only (per user for P1, the newest events
    grown back to GATE_MIN_USERS users for P2); the test part is scored once per model.
    """
    chosen = Candidate.defaults()
    train, test = split(interactions)
    dataset = build_dataset(train, chosen.weights())
    holdout = Holdout.from_split(dataset, test, chosen.weights())
    als = chosen.model().fit(dataset)
    results = {"Popular": evaluate_on(PopularRecommender().fit(dataset), dataset, holdout, K).metrics,
               "ALS (defaults)": evaluate_on(als, dataset, holdout, K).metrics}
    started = time.perf_counter()
    config = TwoLevelConfig(label_rule=rule)
    stage = two_level_stage.fit_stage(train, chosen.weights(), lambda d: {"als": chosen.model().fit(d)},
                                      Settings.from_env().gate_min_users, 0.2, config)
    built = two_level_stage.build(stage, train, dataset, train.max_ts + 1.0, {"als": als},
                                  Films(np.array(sorted(genres)), [""] * len(genres), [genres[f] for f in sorted(genres)]),
                                  config)
    results["two-level"] = evaluate_on(built.model, dataset, holdout, K).metrics
    extra = {**built.record(), "seconds": round(time.perf_counter() - started, 1),
             "recall@100": two_level_stage.holdout_recall(built.model, holdout)}
    return results, extra


def report_two_level() -> None:
    """The two-level section: per dataset and protocol, every model's metrics and two-level / best single."""
    data = {"ml-latest-small": (load_movielens(DEFAULT_DATA)[0], ml_genres(DEFAULT_DATA)),
            "simulator " + ", ".join(f"{k} {v:,}" for k, v in SIMULATOR.items()): simulated()}
    for data_name, (interactions, genres) in data.items():
        for protocol, (split, rule) in TWO_LEVEL_PROTOCOLS.items():
            results, extra = two_level_rows(interactions, genres, split, rule)
            print(f"\n== two-level: {data_name}, {protocol}: {results['two-level']['users']:.0f} test users; "
                  f"label slice {extra['label_split']}; ranker {extra['ranker']}; {extra['seconds']}s")
            header = f"{'model':<28}" + "".join(f"{m + '@' + str(K):>14}" for m in SHOWN)
            print(header + "\n" + "-" * len(header))
            for name, metrics in results.items():
                print(f"{name:<28}" + "".join(f"{metrics[f'{m}@{K}']:>14.4f}" for m in SHOWN))
            best = max((n for n in results if n != "two-level"), key=lambda n: results[n][f"ndcg@{K}"])
            ratio = results["two-level"][f"ndcg@{K}"] / results[best][f"ndcg@{K}"]
            print(f"two-level / best single ({best}) NDCG@{K} = {ratio:.3f}   (target >= 1.05)")
            print(f"recall@100 on the test: {extra['recall@100']}; top ranker features: "
                  + ", ".join(f"{k} {v:.0%}" for k, v in list(extra['importance'].items())[:6]))


def ml_genres(data_dir: Path) -> dict[int, list[str]]:
    """movies.csv genres (split on |, "(no genres listed)" = none)."""
    from app import movielens

    return {row[0]: row[2] for row in movielens.read_movies(data_dir / "movies.csv")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="ml-latest-small folder (read only)")
    parser.add_argument("--tune", action="store_true", help="grid-search ALS on a train-only validation split")
    parser.add_argument("--two-level", action="store_true",
                        help="only the two-level section: both protocols on MovieLens and on the simulator")
    args = parser.parse_args(argv)
    if args.two_level:
        report_two_level()
        return 0

    try:
        interactions, dropped = load_movielens(args.data)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    train, test = per_user_last_fraction(interactions, HOLDOUT_FRACTION)
    print(
        f"{len(interactions):,} ratings, {len(np.unique(interactions.user_id))} users, "
        f"{len(np.unique(interactions.film_id))} films ({dropped} rating(s) of films not in movies.csv dropped); "
        f"train {len(train):,} / test {len(test):,}"
    )

    chosen = tune(train) if args.tune else Candidate.defaults()
    dataset = build_dataset(train, chosen.weights())
    results: dict[str, dict[str, float]] = {}
    started = time.perf_counter()
    results[PlainImplicitALS.name] = evaluate(PlainImplicitALS().fit(dataset), dataset, test, K)
    results["Popular"] = evaluate(PopularRecommender().fit(dataset), dataset, test, K)
    label = "ALS (tuned now)" if args.tune else "ALS (defaults)"
    results[label] = evaluate(chosen.model().fit(dataset), dataset, test, K, chosen.weights())
    print(f"\n{label}: {chosen}; {results[label]['users']:.0f} test users; fits+eval {time.perf_counter() - started:.1f}s")
    report(results, PlainImplicitALS.name)
    report_two_level()
    return 0


if __name__ == "__main__":
    sys.exit(main())
