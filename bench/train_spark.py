"""Training benchmark: Spark MLlib ALS (local[2] here) vs implicit ALS on the same data.

    .venv/bin/python bench/train_spark.py [--users 20000 --films 5000 --events 1000000]
                                          [--spark-master local[2]] [--reuse]

1. Planted-taste events in ClickHouse, the same generator as bench/train.py,
   in a database of its own (`cinerec_bench_spark`; --reuse keeps what is there).
2. A 7-day time holdout (`RetrainConfig(holdout_days=7)`): the training part is
   loaded once to the driver for the baseline and for evaluation.
3. Baseline, same run: `implicit` ALS fit on that matrix (the default backend).
4. Spark: session start-up timed on its own, then a fit of the same window
   read by the executors straight from ClickHouse (per-slice queries, weights
   and GROUP BY pushed down), factors collected into an ALSRecommender.
Prints fit seconds of both, their ratio, and NDCG@10 of each vs Popular.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.recsys.data.dataset import EventWeights, build_dataset  # noqa: E402
from app.recsys.data.load import load_interactions  # noqa: E402
from app.recsys.data.synthetic import PlantedTaste  # noqa: E402
from app.recsys.evaluation.evaluate import evaluate  # noqa: E402
from app.recsys.evaluation.splits import holdout_start, sample_users, time_holdout  # noqa: E402
from app.recsys.models.registry import ALSRecommender, PopularRecommender  # noqa: E402
from app.recsys.models.spark_als import SparkALSTrainer  # noqa: E402
from app.recsys.progress import TqdmProgress  # noqa: E402
from app.settings import Settings  # noqa: E402
from bench.train import prepare  # noqa: E402

DATABASE = "cinerec_bench_spark"  # its own: bench/train.py drops and refills `cinerec_bench_train`
NDCG = "ndcg@10"
HOLDOUT_DAYS = 7.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--films", type=int, default=5_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--spark-master", default="local[2]")
    parser.add_argument("--eval-users", type=int, default=5_000)
    parser.add_argument("--reuse", action="store_true", help="keep the generated database from a previous run")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    base = Settings.from_env()
    settings = base.with_clickhouse_database(DATABASE, spark_master=args.spark_master)
    prepare(settings, PlantedTaste(users=args.users, films=args.films, events=args.events, groups=50, days=90),
            args.reuse)

    progress = TqdmProgress()
    interactions = load_interactions(settings, progress=progress)
    progress.close()
    until = holdout_start(interactions, HOLDOUT_DAYS)
    train, test = time_holdout(interactions, HOLDOUT_DAYS)
    test = sample_users(test, args.eval_users)
    dataset = build_dataset(train, EventWeights())
    print(f"training part: {len(train):,} events, {dataset.shape[0]:,} users x {dataset.shape[1]:,} films, "
          f"{dataset.matrix.nnz:,} pairs")

    started = time.perf_counter()
    implicit = ALSRecommender().fit(dataset)
    implicit_s = time.perf_counter() - started

    with SparkALSTrainer(settings) as trainer:
        started = time.perf_counter()
        spark = trainer.session()
        session_s = time.perf_counter() - started
        cores = spark.sparkContext.defaultParallelism
        started = time.perf_counter()
        spark_model = trainer.fit(dataset.users, dataset.items, None, until)
        spark_s = time.perf_counter() - started

    scores = {name: evaluate(model, dataset, test)[NDCG] for name, model in
              (("implicit", implicit), ("spark", spark_model), ("popular", PopularRecommender().fit(dataset)))}
    print(f"implicit ALS fit (baseline, driver matrix, all cores): {implicit_s:8.2f} s   {NDCG} {scores['implicit']:.4f}")
    print(f"Spark ALS fit on {args.spark_master} ({cores} cores; ClickHouse read included): "
          f"{spark_s:8.2f} s   {NDCG} {scores['spark']:.4f}")
    print(f"Spark session start-up (once per retrain, not in the fit figure): {session_s:.2f} s")
    print(f"Popular {NDCG} {scores['popular']:.4f}")
    print(f"ratio spark/implicit fit time: {spark_s / implicit_s:.1f}x")


if __name__ == "__main__":
    main()
