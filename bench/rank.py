"""CPU cost of one request-time two-level ranking (`RequestRanker.rank`), beside a baseline from the same run.

The bundle is bench/serve.py's (5,000 films, 64-d factors, 4 sources x 50, a
LightGBM ranker trained on synthetic users, `serve_twolevel.synthetic_bundle`);
users have 5 recent plays and live counts, as the bench's fold-in users. Each
call is timed in thread CPU time (what other tenants of a shared machine do
not steal), per block of 50 calls: the median and best block over `--calls`
(one call's thread clock is too coarse in a sandbox to time alone).

Baseline: the batch path of this checkout (`union` of the user as a batch of
one, what `rank` ran before the one-user path), or with `--before DIR` the
`rank` of another checkout (run in a subprocess with DIR on PYTHONPATH, on the
same bundle and users), in alternation with this one over `--rounds`.

    .venv/bin/python bench/rank.py [--before DIR] [--calls 2000] [--rounds 3]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FILMS, FACTORS, RECENT = 5_000, 64, 5
BLOCK = 50  # calls timed together


def users(calls: int, seed: int = 1) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [(rng.permutation(FILMS)[:RECENT] + 1).tolist() for _ in range(calls)]


def build(path: Path, seed: int) -> None:
    """The bundle bytes of bench/serve.py's two-level version, written to `path`."""
    sys.path.insert(0, str(Path(__file__).parent))
    from serve_twolevel import synthetic_bundle  # noqa: PLC0415 (bench helper beside this file)

    from app.recsys.data.idmap import IdMap  # noqa: PLC0415

    class Model:
        items = IdMap(np.arange(1, FILMS + 1))
        item_factors = np.random.default_rng(seed).normal(scale=0.1, size=(FILMS, FACTORS)).astype(np.float32)
        regularization, alpha, weight_scale = 0.1, 10.0, 1.0

    raw, trees = synthetic_bundle(Model(), RECENT, time.time(), np.random.default_rng(seed))
    path.write_bytes(raw)
    print(f"bundle: {FILMS} films, {trees} trees, {len(raw) / 1e6:.1f} MB", flush=True)


def timed(bundle: Path, calls: int, path: str) -> dict[str, float]:
    """Per-call CPU microseconds of `rank` (path "one") or of the batch path ("batch") of this checkout."""
    from app.recsys.ranking.online import RequestRanker  # noqa: PLC0415 (after PYTHONPATH is set)

    ranker = RequestRanker.unpack(bundle.read_bytes())
    now = time.time()
    record = {"events": 9.0, "ratings": 1.0, "rating_sum": 3.5, "last_seen": now - 600}
    if path == "batch":
        from app.recsys.ranking.candidates import union  # noqa: PLC0415
        from app.recsys.ranking.online import rank_candidates  # noqa: PLC0415

        def rank(recent: list[int]) -> object:
            candidates = union(ranker._sources, ranker.batch(recent), ranker.n)  # noqa: SLF001
            return rank_candidates(ranker.ranker, candidates, ranker.state(recent, record), ranker.snapshot, now, 10)
    else:
        def rank(recent: list[int]) -> object:
            return ranker.rank(recent, record, now, 10)
    given = users(calls)
    for recent in given[:50]:
        rank(recent)
    # CPU time per block of calls: the thread clock of a sandboxed kernel is coarse for one call
    per_block = []
    for start in range(0, calls, BLOCK):
        block = given[start:start + BLOCK]
        started = time.thread_time_ns()
        for recent in block:
            rank(recent)
        per_block.append((time.thread_time_ns() - started) / 1e3 / len(block))
    return {"median_us": float(np.median(per_block)), "best_us": float(np.min(per_block))}


def in_checkout(checkout: Path, bundle: Path, calls: int) -> dict[str, float]:
    """`timed` of another checkout's `rank`, in a subprocess run in that checkout (its `app` first on the path)."""
    env = {**os.environ, "PYTHONPATH": str(checkout.resolve())}
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import rank; "
            "print(json.dumps(rank.timed(rank.Path(sys.argv[2]), int(sys.argv[3]), 'one')))")
    done = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent), str(bundle), str(calls)],
                          env=env, cwd=checkout, capture_output=True, text=True, timeout=600, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=3, help="3: a 40-tree ranker (bench/serve.py's had 49)")
    parser.add_argument("--before", type=Path, metavar="DIR", help="another checkout's `rank` as the baseline")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-rank-") as tmp:
        bundle = Path(tmp) / "ranking.npz"
        build(bundle, args.seed)
        base_name = f"before ({args.before})" if args.before else "batch path (union of a batch of one)"
        runs: dict[str, list[dict[str, float]]] = {base_name: [], "rank (one-user path)": []}
        for _ in range(args.rounds):
            runs[base_name].append(in_checkout(args.before, bundle, args.calls) if args.before
                                   else timed(bundle, args.calls, "batch"))
            runs["rank (one-user path)"].append(timed(bundle, args.calls, "one"))
    best = {name: min(r, key=lambda run: run["median_us"]) for name, r in runs.items()}
    base = best[base_name]
    print(f"load average {os.getloadavg()[0]:.1f} (1 min); CPU us per ranking, best of {args.rounds} rounds")
    print(f"{'':40s} {'median':>8s} {'best':>8s} {'speed-up':>8s}")
    for name, figures in best.items():
        ratio = base["median_us"] / figures["median_us"]
        print(f"{name:40s} {figures['median_us']:8.0f} {figures['best_us']:8.0f} {ratio:7.2f}x")


if __name__ == "__main__":
    main()
