"""Cost of assigning a user to an experiment arm, per request and in bulk, same run.

    .venv/bin/python bench/assignment.py [--calls 200000 --users 1000000 --rounds 3]

Per request (what serving pays): `arm_of(seed, threshold, user_id)` with the
experiment's seed computed once, against the obvious alternative of hashing
the string "experiment:user" with BLAKE2b on every call (same stability, no
SQL twin). In bulk (what the analysis pays): `in_challenger` over a numpy
array of user ids against `arm_of` in a Python loop. Both pairs must agree on
every user's arm, or the figure is moot. Best of `--rounds`.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.experiments.assignment import CHALLENGER, CONTROL, arm_of, challenger_threshold, hash_seed, in_challenger  # noqa: E402

EXPERIMENT = "exp-bench"
SHARE = 0.1


def blake2_arm(user_id: int) -> str:
    """The baseline: a fresh BLAKE2b of "experiment:user" per call, top 53 bits vs the share."""
    digest = hashlib.blake2b(f"{EXPERIMENT}:{user_id}".encode(), digest_size=8).digest()
    return CHALLENGER if (int.from_bytes(digest, "little") >> 11) / 2**53 < SHARE else CONTROL


def best_of(rounds: int, run: Callable[[], object]) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(rounds):
        started = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - started)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    seed, threshold = hash_seed(EXPERIMENT), challenger_threshold(SHARE)
    ids = list(range(1, args.calls + 1))
    ours_s, ours = best_of(args.rounds, lambda: [arm_of(seed, threshold, u) for u in ids])
    base_s, base = best_of(args.rounds, lambda: [blake2_arm(u) for u in ids])
    share = sum(a == CHALLENGER for a in ours) / len(ours)
    print(f"per request, {args.calls:,} calls (best of {args.rounds}); challenger share {share:.4f} for {SHARE}:")
    print(f"  ours     arm_of (intHash64 of seed ^ user)     {ours_s / args.calls * 1e6:6.3f} us/call")
    print(f"  baseline BLAKE2b of 'experiment:user' per call {base_s / args.calls * 1e6:6.3f} us/call")
    print(f"  ours / baseline = {ours_s / base_s:.2f}x the time")
    assert abs(share - SHARE) < 0.01 and abs(sum(a == CHALLENGER for a in base) / len(base) - SHARE) < 0.01

    users = np.arange(1, args.users + 1, dtype=np.uint64)
    bulk_s, mask = best_of(args.rounds, lambda: in_challenger(seed, threshold, users))
    loop_ids = users[: args.calls].tolist()
    loop_s, loop = best_of(args.rounds, lambda: [arm_of(seed, threshold, u) == CHALLENGER for u in loop_ids])
    assert mask[: args.calls].tolist() == loop  # same arms
    bulk_ns, loop_ns = bulk_s / args.users * 1e9, loop_s / args.calls * 1e9
    print(f"bulk (analysis): numpy over {args.users:,} users {bulk_ns:6.1f} ns/user; "
          f"Python loop {loop_ns:6.1f} ns/user; numpy / loop = {bulk_ns / loop_ns:.3f}x the time")


if __name__ == "__main__":
    main()
