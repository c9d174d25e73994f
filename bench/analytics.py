"""Analytics benchmark: the whole dashboard payload vs one deduplicated scan, and
what dashboards under load cost serving.

    .venv/bin/python bench/analytics.py [--events 300000 --users 5000 --films 500] [--keep] [--load 20]

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

5. With --load N: a real `cinerec serve` over that database and a Redis
   database of its own (default 14; a synthetic model, bench/serve.py's) is
   probed by 2 clients looping on `/v1/users/{id}/recommendations`: idle for
   5 s, while N dashboard requests (a different range each, so the cache does
   not absorb them) run concurrently, and idle again; `/ready` is polled
   alongside. Prints the recommendation p99 idle (the baseline, before and
   after together) and under load, their ratio, and the
   `/ready` and dashboard status counts. Target: p99 under load <= 10 ms and no
   503 from `/ready` (the machine's other load skews both sides the same way).
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import aiohttp
import redis
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.analytics import api, queries  # noqa: E402
from app.experiments import analysis  # noqa: E402
from app.experiments.model import Experiment, State  # noqa: E402
from app.settings import Settings  # noqa: E402
from app.simulate import generate  # noqa: E402
from app.storage.clickhouse import client, migrate  # noqa: E402
from app.storage.interactions import insert_events  # noqa: E402
from app.worker_process import free_port, settings_env  # noqa: E402
from bench.serve import publish, start  # noqa: E402

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


TOKEN = "bench-analytics"
PROBE_CLIENTS = 2
IDLE_S = 5.0


def p99_ms(seconds: list[float]) -> float:
    ordered = sorted(seconds)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000 if ordered else float("nan")


async def probe_serving(url: str, load: int) -> None:
    """Recommendation latency idle (before and after: the machine is shared), and while
    `load` dashboards run; /ready polled throughout."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        samples: list[tuple[float, float]] = []  # (started, seconds)
        ready: list[tuple[float, int]] = []

        async def recommend(client: int, until: asyncio.Event) -> None:
            user = 1 + client
            while not until.is_set():
                started = time.perf_counter()
                async with session.get(f"{url}/v1/users/{user}/recommendations?limit=10") as response:
                    await response.read()
                samples.append((started, time.perf_counter() - started))
                user = user % 1000 + 1

        async def readiness(until: asyncio.Event) -> None:
            while not until.is_set():
                async with session.get(f"{url}/ready") as response:
                    await response.read()
                ready.append((time.perf_counter(), response.status))
                await asyncio.sleep(0.1)

        async def dashboard(day: int) -> int:
            params = {"from": f"2026-02-{day:02d}", "to": "2026-03-20"}
            async with session.get(f"{url}/v1/analytics/dashboard", params=params,
                                   headers={"Authorization": f"Bearer {TOKEN}"}) as response:
                await response.read()
                return response.status

        async def probing(work: Callable[[], object]) -> tuple[float, float, object]:
            until = asyncio.Event()
            probes = [recommend(c, until) for c in range(PROBE_CLIENTS)]
            tasks = [asyncio.ensure_future(p) for p in (*probes, readiness(until))]
            started = time.perf_counter()
            result = await work()
            ended = time.perf_counter()
            until.set()
            await asyncio.gather(*tasks)
            return started, ended, result

        idle_before = await probing(lambda: asyncio.sleep(IDLE_S))
        load_from, load_to, statuses = await probing(
            lambda: asyncio.gather(*(dashboard(1 + i % 28) for i in range(load)))
        )
        idle_after = await probing(lambda: asyncio.sleep(IDLE_S))

    def within(start: float, end: float) -> list[float]:
        return [seconds for at, seconds in samples if start <= at <= end]

    idle = within(*idle_before[:2]) + within(*idle_after[:2])
    loaded = within(load_from, load_to)
    during = Counter(status for at, status in ready if load_from <= at <= load_to)
    print(f"{load} concurrent dashboards: {dict(Counter(statuses))} in {load_to - load_from:.1f} s; "
          f"/ready while they ran: {dict(during)}; {PROBE_CLIENTS} clients on recommendations")
    print(f"recommendations p99 idle:     {p99_ms(idle):8.2f} ms  ({len(idle)} requests, before and after)")
    print(f"recommendations p99 loaded:   {p99_ms(loaded):8.2f} ms  ({len(loaded)} requests)")
    print(f"ratio loaded / idle:          {p99_ms(loaded) / p99_ms(idle):8.2f}x")


def serve_under_load(settings: Settings, redis_db: int, load: int) -> None:
    served = settings.with_redis_db(redis_db, analytics_token=TOKEN)
    conn = redis.Redis.from_url(served.redis_url, socket_timeout=30)
    publish(conn, users=1000, foldin_users=100)
    port = free_port()
    env = {**os.environ, **settings_env(served)}
    with tempfile.TemporaryDirectory(prefix="bench-analytics-") as tmp:
        server = start([str(Path(sys.executable).parent / "cinerec"), "serve", "--port", str(port)], env, port,
                       Path(tmp) / "serve.log")
        try:
            asyncio.run(probe_serving(f"http://127.0.0.1:{port}", load))
        finally:
            server.terminate()
            server.wait(timeout=30)
            conn.flushdb()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--users", type=int, default=5_000)
    parser.add_argument("--films", type=int, default=500)
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    parser.add_argument("--load", type=int, default=0, metavar="N",
                        help="also measure serving while N dashboards run (e.g. 20)")
    parser.add_argument("--redis-db", type=int, default=14, help="Redis database of the --load model")
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
        if args.load:
            serve_under_load(settings, args.redis_db, args.load)
    finally:
        if not args.keep:
            conn.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
        conn.disconnect()


if __name__ == "__main__":
    main()
