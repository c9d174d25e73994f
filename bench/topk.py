"""Top-n of every user, seen films filtered: `ALSRecommender.recommend` vs implicit's
`topk` called the plain way (a scipy CSR as `filter_query_items`), same factors, same run.

    .venv/bin/python bench/topk.py [--users 20000 --films 20000 --seen 46 --n 100]

The retrain's publish stage ranks every user this way (100k users x 20k films
in bench/train.py). implicit's topk slices its filter one row at a time while
holding the GIL; `app.recsys.models.als` hands it the rows' indices directly.
A third figure, topk without any filter, is the floor. BLAS is held to one
thread in all three (implicit runs one thread per core itself).
Each variant runs `--rounds` times, alternately, and keeps its best round.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import scipy.sparse as sp
from implicit.cpu.topk import topk
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.recsys.models.als import ALSRecommender  # noqa: E402
from app.recsys.data.idmap import IdMap  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--films", type=int, default=20_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--seen", type=int, default=46, help="films per user (the 5M-event benchmark has ~46)")
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    user_factors = rng.standard_normal((args.users, args.factors), dtype=np.float32)
    item_factors = rng.standard_normal((args.films, args.factors), dtype=np.float32)
    rows = np.repeat(np.arange(args.users), args.seen)
    seen = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, rng.integers(0, args.films, len(rows)))),
                         shape=(args.users, args.films))
    model = ALSRecommender(factors=args.factors).with_factors(
        IdMap(np.arange(args.users)), IdMap(np.arange(args.films)), user_factors, item_factors)
    users = np.arange(args.users)

    def plain() -> np.ndarray:
        with threadpool_limits(1, "blas"):
            return topk(item_factors, user_factors, args.n, filter_query_items=seen, num_threads=0)[0]

    def unfiltered() -> np.ndarray:
        with threadpool_limits(1, "blas"):
            return topk(item_factors, user_factors, args.n, num_threads=0)[0]

    variants: dict[str, Callable[[], np.ndarray]] = {
        "ours (ALSRecommender.recommend)": lambda: model.recommend(users, args.n, seen=seen)[0],
        "baseline (topk, scipy filter)": plain,
        "floor (topk, no filter)": unfiltered,
    }
    best = {name: float("inf") for name in variants}
    results = {}
    for _ in range(args.rounds):
        for name, run in variants.items():
            started = time.perf_counter()
            results[name] = run()
            best[name] = min(best[name], time.perf_counter() - started)
    np.testing.assert_array_equal(results["ours (ALSRecommender.recommend)"],
                                  results["baseline (topk, scipy filter)"])  # same answer, or the figure is moot

    print(f"top-{args.n} of {args.users:,} users x {args.films:,} films, {args.seen} seen each, best of {args.rounds}:")
    for name, seconds in best.items():
        print(f"  {name:34} {seconds:6.2f} s  {args.users / seconds:>10,.0f} users/s")
    ours, baseline = best["ours (ALSRecommender.recommend)"], best["baseline (topk, scipy filter)"]
    print(f"ours / baseline = {ours / baseline:.2f}x the time")


if __name__ == "__main__":
    main()
