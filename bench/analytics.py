"""Analytics benchmark: the whole dashboard payload vs one deduplicated scan.

    .venv/bin/python bench/analytics.py [--events 300000 --users 5000 --films 500] [--keep]

1. Simulated sessions (app.simulate, 30 days) are inserted into a database of
   the benchmark's own (`cinerec_bench_analytics`; dropped afterwards unless --keep).
2. Figure: `app.analytics.api.dashboard` over the 30 days (every metric, best of 3),
   plus each query's time.
3. Baseline, same run: `SELECT count() FROM interactions FINAL` over the same
   range, the least any reader of deduplicated events pays (best of 3).
4. Also: an experiment report (`app.experiments.analysis.analyse`, 50 % split
   by the hash, 1,000 bootstrap replicates) over the same 30 days, with its
   SQL and its statistics timed apart.

Prints each and its ratio to the baseline (roughly: how many deduplicated scans it costs).
"""
from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.analytics import api, queries  # noqa: E402
from app.experiments import analysis  # noqa: E402
from app.experiments.model import Experiment, State  # noqa: E402
from app.settings import Settings  # noqa: E402
from app.simulate import generate  # noqa: E402
from app.storage.clickhouse import client, migrate  # noqa: E402
from app.storage.interactions import insert_events  # noqa: E402

DATABASE = "cinerec_bench_analytics"
END_TS = 1_774_051_200.0  # 2026-03-21T00:00Z: the simulated days are 2026-02-19 .. 2026-03-20
PERIOD = api.DateRange.parse("2026-02-19", "2026-03-20")
CHUNK = 50_000
BASELINE = "SELECT count() FROM interactions FINAL WHERE ts >= toDateTime(%(start)s) AND ts < toDateTime(%(stop)s)"


def best_of(runs: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--films", type=int, default=500)
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    args = parser.parse_args()

    base = Settings.from_env()
    settings = base.with_clickhouse_database(DATABASE)
    migrate(settings)
    conn = client(settings)
    try:
        conn.execute("TRUNCATE TABLE interactions")
        _, history = generate(users=args.users, films=args.films, events=args.events, seed=11, days=30, end_ts=END_TS)
        events = list(history)
        for start in tqdm(range(0, len(events), CHUNK), desc="insert", unit="chunk"):
            insert_events(conn, events[start : start + CHUNK])
        params = PERIOD.params()

        baseline = best_of(3, lambda: conn.execute(BASELINE, params))
        figure = best_of(3, lambda: api.dashboard(conn, PERIOD))
        print(f"events: {len(events):,}, range {PERIOD.first} .. {PERIOD.last}")
        for name in sorted(n for n in dir(queries) if n.isupper() and not n.startswith("_")
                           and isinstance(getattr(queries, n), str)):
            print(f"  {name:22} {best_of(3, lambda: conn.execute(getattr(queries, name), params)) * 1000:8.1f} ms")
        print(f"dashboard (all metrics):      {figure * 1000:8.1f} ms")
        print(f"baseline (count() FINAL):     {baseline * 1000:8.1f} ms")
        print(f"ratio dashboard / baseline:   {figure / baseline:8.1f}x")
        start = datetime.fromtimestamp(END_TS - 30 * 86_400, tz=timezone.utc)
        exp = Experiment("exp-bench", "v1", "v2", share=0.5, created_at=start).moved_to(State.RUNNING, start)
        stop = datetime.fromtimestamp(END_TS, tz=timezone.utc)
        sql = best_of(3, lambda: analysis.load_users(conn, start, stop, "v1", "v2"))
        report = best_of(3, lambda: analysis.analyse(conn, exp, stop))
        print(f"experiment report:            {report * 1000:8.1f} ms  (per-user SQL {sql * 1000:.1f} ms, "
              f"{len(analysis.load_users(conn, start, stop, 'v1', 'v2')):,} exposed users)")
        print(f"ratio report / baseline:      {report / baseline:8.1f}x")
    finally:
        if not args.keep:
            conn.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
        conn.disconnect()


if __name__ == "__main__":
    main()
