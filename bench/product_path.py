"""The product path end to end on real services, scored through the API, beside offline baselines.

    .venv/bin/python bench/product_path.py [--data DIR] [--protocols random,last] [--redis-db 4]

On ml-latest-small, per protocol (the two of issue 11):

* `random`: each user's random 25% of rated films held out (seed 0);
* `last`: each user's chronologically last 25% of rated films held out.

1. The training ratings (the other 75%) go to a temporary MovieLens folder
   (movies.csv as it is).
2. A scratch ClickHouse database (`cinerec_bench_product`, recreated), a scratch
   Redis db (flushed), fresh Kafka topics and consumer group; `cinerec worker`
   runs on them (its loader stores what Kafka gets; its web view serves the API).
3. `cinerec import-movielens <folder>` sends the ratings' events through Kafka;
   the bench waits until ClickHouse holds every one of them.
4. `cinerec train` with the default settings (self-tuning on).
5. `GET /v1/users/{id}/recommendations?limit=10` for every test user.
6. NDCG@10, recall@10, MAP@10 and hit rate of those lists against the
   held-out films (a film counts when the training part knows it and the
   user's training part does not hold it).

Baselines in the same run, offline on the same split: Popular, and a plain
implicit ALS on the binary matrix with 32 factors tuned on the TEST over a
30-point grid of regularization x alpha (how issue 11 measured what tuned
ALS reaches; the grid never feeds the product).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import redis
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app import movielens  # noqa: E402
from app.localstack import proc  # noqa: E402
from app.recsys.data.dataset import Interactions, build_dataset  # noqa: E402
from app.recsys.evaluation.metrics import MAP, NDCG, HitRate, Recall, compute_metrics  # noqa: E402
from app.recsys.models.base import binary  # noqa: E402
from app.recsys.models.popularity import PopularRecommender  # noqa: E402
from app.settings import REPO_ROOT, Settings  # noqa: E402
from app.storage.clickhouse import client, migrate  # noqa: E402
from app.worker_process import WorkerProcess, settings_env  # noqa: E402

DATABASE = "cinerec_bench_product"
K = 10
HELD_OUT = 0.25
GRID_REG = (0.01, 0.1, 1.0, 10.0, 100.0)
GRID_ALPHA = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
METRICS = [Recall(K), NDCG(K), MAP(K), HitRate(K)]
CLI = str(Path(sys.executable).parent / "cinerec")


def split(ratings: list[movielens.Rating], protocol: str) -> np.ndarray:
    """Boolean mask of held-out ratings: per user floor(25%) (at least one), at random or the latest."""
    users = np.array([r.user_id for r in ratings])
    if protocol == "random":
        key = np.random.default_rng(0).random(len(ratings))
    else:
        key = np.array([r.ts for r in ratings], dtype=np.float64) + np.array([r.movie_id for r in ratings]) * 1e-7
    order = np.lexsort((key, users))
    sorted_users = users[order]
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
    counts = np.diff(np.r_[starts, len(order)])
    held = np.maximum(1, np.floor(counts * HELD_OUT)).astype(np.int64)
    rank = np.arange(len(order)) - np.repeat(starts, counts)
    # random: the first `held` of a shuffled order; last: the last `held` by time
    chosen = rank < np.repeat(held, counts) if protocol == "random" else rank >= np.repeat(counts - held, counts)
    mask = np.zeros(len(ratings), dtype=bool)
    mask[order] = chosen
    return mask


def write_folder(directory: Path, source: Path, ratings: list[movielens.Rating]) -> None:
    (directory / "movies.csv").write_bytes((source / "movies.csv").read_bytes())
    with open(directory / "ratings.csv", "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["userId", "movieId", "rating", "timestamp"])
        out.writerows((r.user_id, r.movie_id, r.stars, r.ts) for r in ratings)


def relevance(train: list[movielens.Rating], test: list[movielens.Rating]) -> dict[int, np.ndarray]:
    """Per test user, the held-out films training knows and the user's training part does not hold."""
    known = {r.movie_id for r in train}
    seen: dict[int, set[int]] = {}
    for r in train:
        seen.setdefault(r.user_id, set()).add(r.movie_id)
    out: dict[int, set[int]] = {}
    for r in test:
        if r.movie_id in known and r.user_id in seen and r.movie_id not in seen[r.user_id]:
            out.setdefault(r.user_id, set()).add(r.movie_id)
    return {user: np.array(sorted(films)) for user, films in sorted(out.items())}


def score(lists: dict[int, list[int]], relevant: dict[int, np.ndarray]) -> dict[str, float]:
    users = sorted(relevant)
    recommended = np.full((len(users), K), -1, dtype=np.int64)
    for row, user in enumerate(users):
        films = lists.get(user, [])[:K]
        recommended[row, : len(films)] = films
    return compute_metrics(recommended, [relevant[u] for u in users], METRICS)


def offline_lists(train: list[movielens.Rating], users: list[int]) -> dict[str, dict[int, list[int]]]:
    """Top-K lists of the offline baselines: Popular and every point of the plain-ALS grid."""
    events = [e for r in train for e in movielens.rating_events(r)]
    columns = {name: [getattr(e, name) or 0 for e in events] for name in
               ("user_id", "film_id", "ts", "watch_seconds", "duration_seconds", "rating")}
    columns["event_type"] = [e.event_type for e in events]
    dataset = build_dataset(Interactions.from_columns(columns))
    index = dataset.users.to_index(np.array(users))
    out = {}
    ids, _ = PopularRecommender().fit(dataset).recommend(index, K, seen=dataset.matrix)
    out["Popular"] = dict(zip(users, dataset.items.to_external(ids).tolist()))
    history = binary(dataset.matrix)
    for reg in GRID_REG:
        for alpha in GRID_ALPHA:
            with threadpool_limits(1, "blas"):
                als = AlternatingLeastSquares(factors=32, regularization=reg, alpha=alpha, random_state=0)
                als.fit(history, show_progress=False)
                ids, _ = als.recommend(index, history[index], N=K)
            out[f"plain ALS 32f reg {reg:g} alpha {alpha:g}"] = dict(zip(users, dataset.items.to_external(ids).tolist()))
    return out


def stored_events(settings: Settings) -> int:
    conn = client(settings)
    try:
        (count,), = conn.execute(f"SELECT uniqExact(event_id) FROM {settings.clickhouse_database}.interactions")
    finally:
        conn.disconnect()
    return int(count)


def run_cli(settings: Settings, *args: str, timeout: float = 3600.0) -> str:
    env = {**os.environ, **settings_env(settings)}
    done = subprocess.run([CLI, *args], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"cinerec {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


def api_lists(url: str, users: list[int]) -> tuple[dict[int, list[int]], dict[str, int]]:
    lists, sources = {}, {}
    for user in users:
        with urllib.request.urlopen(f"{url}/v1/users/{user}/recommendations?limit={K}", timeout=10) as response:
            body = json.loads(response.read())
        lists[user] = [item["film_id"] for item in body["items"]]
        sources[body.get("source", "?")] = sources.get(body.get("source", "?"), 0) + 1
    return lists, sources


def product_path(base: Settings, data: Path, protocol: str, train: list[movielens.Rating],
                 users: list[int], workdir: Path) -> tuple[dict[int, list[int]], dict[str, int], str, float]:
    """Import the training ratings through Kafka, train, and read every test user's list from the API."""
    tag = uuid.uuid4().hex[:8]
    settings = base.with_clickhouse_database(DATABASE).with_overrides(
        topic_interactions=f"bench-product-{tag}", topic_dlq=f"bench-product-dlq-{tag}", app_id=f"bench-product-{tag}",
        model_dir=workdir / "models", local_dir=workdir / "local")
    admin = client(settings, database="default")
    try:
        admin.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
    finally:
        admin.disconnect()
    migrate(settings)
    conn = redis.Redis.from_url(settings.redis_url, socket_timeout=10)
    conn.flushdb()
    conn.close()
    folder = workdir / "ml"
    folder.mkdir()
    write_folder(folder, data, train)
    expected = len(train) * len(movielens.EVENTS_PER_RATING)
    started = time.perf_counter()
    with WorkerProcess(settings, workdir / "worker.log") as worker:
        print(f"[{protocol}] {run_cli(settings, 'import-movielens', str(folder)).strip()}", flush=True)
        if not proc.wait_for(lambda: stored_events(settings) >= expected, 1800, alive=worker.alive, interval=2.0):
            raise RuntimeError(f"ClickHouse holds {stored_events(settings)} of {expected} events; worker log tail:\n"
                               f"{proc.tail(workdir / 'worker.log', 30)}")
        imported = time.perf_counter() - started
        print(f"[{protocol}] {expected:,} events stored in ClickHouse in {imported:.0f}s", flush=True)
        trained = run_cli(settings, "train")
        lists, sources = api_lists(f"http://127.0.0.1:{worker.settings.web_port}", users)
    return lists, sources, trained, imported


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=movielens.DEFAULT_DIR)
    parser.add_argument("--protocols", default="random,last")
    parser.add_argument("--redis-db", type=int, default=4)
    args = parser.parse_args(argv)

    base = Settings.from_env().with_redis_db(args.redis_db)
    films = {row[0] for row in movielens.read_movies(args.data / "movies.csv")}
    ratings = [r for r in movielens.importable(movielens.read_ratings(args.data / "ratings.csv"))[0]
               if r.movie_id in films]
    print(f"{len(ratings):,} ratings; machine load {' '.join(f'{x:.1f}' for x in os.getloadavg())} (shared machine)")
    for protocol in args.protocols.split(","):
        held = split(ratings, protocol)
        train = [r for r, h in zip(ratings, held) if not h]
        test = [r for r, h in zip(ratings, held) if h]
        relevant = relevance(train, test)
        users = sorted(relevant)
        with tempfile.TemporaryDirectory(prefix="bench-product-") as workdir:
            lists, sources, trained, imported = product_path(base, args.data, protocol, train, users, Path(workdir))
        print(f"\n=== {protocol}: {len(train):,} training ratings, {len(test):,} held out, {len(users)} test users")
        print("cinerec train:\n  " + "\n  ".join(line for line in trained.splitlines() if line.strip()))
        print(f"API sources: {sources}")
        api = score(lists, relevant)
        baselines = {name: score(ranked, relevant) for name, ranked in offline_lists(train, users).items()}
        best = max((n for n in baselines if n.startswith("plain")), key=lambda n: baselines[n]["ndcg@10"])
        rows = {"product (API)": api, "Popular (offline)": baselines["Popular"],
                f"{best} (test-tuned, offline)": baselines[best]}
        for name, metrics in rows.items():
            print(f"  {name:<52} " + "  ".join(f"{key} {metrics[key]:.4f}" for key in
                                                   ("ndcg@10", "recall@10", "map@10", "hit_rate@10")))
        print(f"  product / test-tuned plain ALS NDCG@10 = {api['ndcg@10'] / baselines[best]['ndcg@10']:.3f}; "
              f"product / Popular = {api['ndcg@10'] / baselines['Popular']['ndcg@10']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
