"""Retrain benchmark: the whole pipeline with self-tuning vs the same pipeline untuned vs a bare ALS fit.

    .venv/bin/python bench/train.py [--users 100000 --films 20000 --events 5000000] [--reuse]

1. Planted-taste events are generated inside ClickHouse (INSERT ... SELECT
   FROM numbers(); app.recsys.data.synthetic) into a database of the benchmark's
   own (`cinerec_bench_train`, kept with --reuse for repeated runs).
2. `pipeline.retrain` runs twice against it and a Redis database of its own
   (default 3), each on an empty run history (so the tuning sizes its time
   budget from its first trial, as a first run does):
   * "today": `--no-tune`, no first-level models besides ALS, no two-level: what a retrain
     did before self-tuning (load, matrix, evaluate = holdout fit of ALS +
     Popular, warm fit on everything, publish every user's top-100 and every
     film's similar list, save);
   * "tuned": the default configuration: the tuning stage (TUNE_TRIALS trials,
     at most TUNE_TIME_SHARE of the run), the first-level stage (EASE,
     item-kNN, the FM on 2,000 users) and the two-level challenger (--two-level)
     on top.
   Stage times come from the run reports.
3. Baseline, same run: a bare `implicit.cpu.als.AlternatingLeastSquares` fit
   (the default ALS parameters) on the full matrix, before and after the
   pipelines (the machine is shared: the mean of the two brackets its load).

Prints stage times (where the time goes), load rows/s, publish users/s, and
the ratios tuned / today and tuned / bare fit, in wall seconds and in this
process's CPU seconds (less sensitive to other work on the machine; it leaves
out ClickHouse's and Redis's own CPU). Target: tuned <= 3 x today.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import redis
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.recsys.training import pipeline  # noqa: E402
from app.recsys.data.dataset import EventWeights, build_dataset  # noqa: E402
from app.recsys.data.load import load_interactions  # noqa: E402
from app.recsys.models.als import weight_scale  # noqa: E402
from app.recsys.models.registry import ALSRecommender  # noqa: E402
from app.recsys.progress import TqdmProgress  # noqa: E402
from app.recsys.ranking.twolevel import TwoLevelConfig  # noqa: E402
from app.recsys.data.synthetic import PlantedTaste, seed  # noqa: E402
from app.settings import Settings  # noqa: E402
from app.storage.clickhouse import client, migrate  # noqa: E402

DATABASE = "cinerec_bench_train"


def prepare(settings: Settings, spec: PlantedTaste, reuse: bool) -> None:
    """Fresh benchmark database (`settings`' one) with the planted-taste events (or the previous one with --reuse)."""
    database = settings.clickhouse_database
    admin = client(settings, database="default")
    try:
        if not reuse:
            admin.execute(f"DROP DATABASE IF EXISTS {database}")
        migrate(settings)
        (count,), = admin.execute(f"SELECT count() FROM {database}.interactions")
        if count == 0:
            started = time.perf_counter()
            seed(settings, spec)
            admin.execute(f"OPTIMIZE TABLE {database}.interactions FINAL")
            print(f"generated {spec.events:,} events in ClickHouse in {time.perf_counter() - started:.1f}s")
        else:
            print(f"reusing {count:,} events in {database}")
    finally:
        admin.disconnect()


def bare_fit_seconds(matrix: sp.csr_matrix) -> tuple[float, float]:
    """(wall, CPU) seconds of a bare implicit fit of `matrix` with the default ALS parameters."""
    params = ALSRecommender().params()
    with threadpool_limits(1, "blas"):
        als = AlternatingLeastSquares(num_threads=0, factors=params["factors"], iterations=params["iterations"],
                                      regularization=params["regularization"],
                                      alpha=params["alpha"] * weight_scale(matrix, True), random_state=0)
        started, cpu = time.perf_counter(), time.process_time()
        als.fit(matrix, show_progress=False)
        return time.perf_counter() - started, time.process_time() - cpu


def timed_retrain(settings: Settings, config: pipeline.RetrainConfig) -> tuple[pipeline.RunReport, float, float]:
    """(report, wall s, CPU s) of one retrain on a flushed Redis db and an empty run history."""
    conn = redis.Redis.from_url(settings.redis_url, socket_timeout=30)
    conn.flushdb()
    admin = client(settings)
    try:
        admin.execute(f"DROP TABLE IF EXISTS {settings.clickhouse_database}.model_runs")
    finally:
        admin.disconnect()
    migrate(settings)  # recreates it, empty
    progress = TqdmProgress()
    started, cpu_started = time.perf_counter(), time.process_time()
    report = pipeline.retrain(settings, config, progress=progress)
    total, total_cpu = time.perf_counter() - started, time.process_time() - cpu_started
    progress.close()
    conn.flushdb()
    conn.close()
    return report, total, total_cpu


def print_run(label: str, report: pipeline.RunReport, total: float, total_cpu: float) -> None:
    t = report.timings
    print(f"\n{label}: {report.status} ({report.reason})")
    for stage, seconds in t.items():
        print(f"  {stage:22} {seconds:8.2f} s")
    print(f"  {'total':22} {total:8.2f} s   ({total_cpu:.2f} s CPU in this process)")
    tuning = report.params.get("tuning")
    if tuning:
        als = tuning["als"]
        print(f"  tuning: {len(als['trials'])} trials on {tuning['trial_users']:,} of {tuning['users']:,} users, "
              f"stopped by {als['stopped_by']}, budget {tuning['budget_s']:.1f}s ({tuning['budget_source']}); "
              f"ALS validation NDCG@10 {als['validation_ndcg@10']:.4f} at {als['best']}")
    for name, figures in report.first_level.items():
        fit = f", fit {figures['fit_s']:.1f}s" if "fit_s" in figures else ""
        print(f"  first level {name:9} recall@100 {figures['recall@100']:.4f}, NDCG@10 {figures['ndcg@10']:.4f}{fit}")
    two = report.models.get("two-level")
    if two:
        print(f"  two-level: ndcg@10 {two.get('ndcg@10', float('nan')):.4f} vs {report.models['als']['ndcg@10']:.4f} "
              f"ALS; label slice {two.get('label_split')}; ranker {two.get('ranker')}; its stage timings "
              f"{two.get('timings')}; recall@100 {two.get('recall@100')}")
    print(f"  gate: {report.shipped or 'ALS'} shipped; NDCG@10 {report.metrics.get('ndcg@10', 0):.4f} vs Popular "
          f"{report.baseline_metrics.get('ndcg@10', 0):.4f} on {report.metrics.get('users', 0):.0f} holdout users")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--films", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=5_000_000)
    parser.add_argument("--redis-db", type=int, default=3)
    parser.add_argument("--reuse", action="store_true", help="keep the generated database from a previous run")
    parser.add_argument("--database", default=DATABASE, help="ClickHouse database of the generated events")
    parser.add_argument("--two-level", choices=("off", "auto", "always"), default="auto",
                        help="the two-level challenger: not built, shipped when it wins, or always shipped")
    args = parser.parse_args()

    base = Settings.from_env()
    spec = PlantedTaste(users=args.users, films=args.films, events=args.events, groups=50, days=90)
    with tempfile.TemporaryDirectory(prefix="bench-train-") as model_dir:
        settings = base.with_clickhouse_database(args.database).with_redis_db(args.redis_db, model_dir=Path(model_dir))
        prepare(settings, spec, args.reuse)
        matrix = build_dataset(load_interactions(settings), EventWeights()).matrix.astype(np.float32)
        print(f"machine load {' '.join(f'{x:.1f}' for x in os.getloadavg())} (shared machine)")
        bare_before = bare_fit_seconds(matrix)
        today = timed_retrain(settings, pipeline.RetrainConfig(force=True, tune=False, first_level=(),
                                                               two_level=None))
        two_level = None if args.two_level == "off" else TwoLevelConfig(always_ship=args.two_level == "always")
        tuned = timed_retrain(settings, pipeline.RetrainConfig(force=True, two_level=two_level))
    bare_after = bare_fit_seconds(matrix)
    bare, bare_cpu = (bare_before[0] + bare_after[0]) / 2, (bare_before[1] + bare_after[1]) / 2

    report = tuned[0]
    print(f"\nretrain of {report.n_interactions:,} events, {report.n_users:,} users x {report.n_items:,} films "
          f"({matrix.nnz:,} pairs)")
    print_run("today (--no-tune, ALS only)", *today)
    print_run("tuned (default: tune + first level)", *tuned)
    t = report.timings
    topn = t["publish"] - t["publish_users_write"] - t["publish_similar_write"]
    print(f"\nload:    {report.n_interactions / t['load']:>12,.0f} rows/s   (target >= 2,000,000)")
    print(f"publish: {report.n_users / t['publish_users_write']:>12,.0f} users/s  Redis writes of the users' "
          f"top-{pipeline.RetrainConfig().n_recs} lists (target >= 50,000)")
    print(f"         {report.n_users / t['publish']:>12,.0f} users/s  whole publish stage, incl. {topn:.1f}s outside "
          f"the Redis writes (model top-n of users + similar films, which overlaps them, and the other keys)")
    print(f"bare implicit fit (baseline, same matrix, default params): {bare_before[0]:.2f} s before, "
          f"{bare_after[0]:.2f} s after the pipelines ({bare_before[1]:.2f} / {bare_after[1]:.2f} s CPU)")
    for label, (_, total, total_cpu) in (("today", today), ("tuned", tuned)):
        print(f"{label:5} retrain / bare fit = {total / bare:.2f}x wall, {total_cpu / bare_cpu:.2f}x CPU")
    print(f"tuned / today = {tuned[1] / today[1]:.2f}x wall, {tuned[2] / today[2]:.2f}x CPU   (target <= 3x)")


if __name__ == "__main__":
    main()
