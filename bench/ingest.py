"""Ingestion benchmark: end-to-end events/s of the Faust pipeline vs a bare consumer.

    .venv/bin/python bench/ingest.py [--events 1000000] [--with-stats|--loader-only] [--workers N]

1. N simulated events (app.simulator) are produced to a fresh topic.
2. Baseline: a bare aiokafka consumer reads the same topic doing nothing.
3. Pipeline: `cinerec worker` subprocess(es) with a fresh app id and a fresh
   ClickHouse database, started after the events are in Kafka; the clock runs
   from "all workers ready" until every row is in ClickHouse (loader only) or,
   with stats, until the loader group has committed the end of the topic and
   the Faust group the end of the stats batch topics (every event counted).
Prints both rates and their ratio (pipeline / baseline).
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import NamedTuple

from aiokafka import AIOKafkaConsumer
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.settings import Settings  # noqa: E402
from app.producer import produce_messages  # noqa: E402
from app.simulate import generate  # noqa: E402
from app.simulator import wire  # noqa: E402
from app.storage.clickhouse import client, migrate  # noqa: E402
from app.storage.interactions import visible_count  # noqa: E402
from app.storage.kafka_admin import drop_topics, ensure_topics, group_caught_up  # noqa: E402
from app.worker_process import WorkerProcess  # noqa: E402


def simulated_messages(n: int, seed: int = 1) -> list[tuple[bytes, bytes]]:
    """n (key, value) messages of the simulated world over the last 30 days."""
    _, history = generate(users=max(n // 50, 100), films=2_000, events=n, seed=seed, end_ts=time.time() - 60)
    return list(wire.messages(iter(history), n))


class Rate(NamedTuple):
    wall: float  # events per second of wall time
    cpu: float  # events per CPU second of the measured process (robust to other load on the machine)


async def bare_consumer_rate(settings: Settings, n: int) -> Rate:
    """Events/s of an aiokafka consumer that only reads the topic (the baseline)."""
    consumer = AIOKafkaConsumer(settings.topic_interactions, bootstrap_servers=settings.kafka_bootstrap,
                                group_id=f"bench-baseline-{uuid.uuid4().hex[:8]}", auto_offset_reset="earliest",
                                enable_auto_commit=False, request_timeout_ms=60_000)
    await asyncio.wait_for(consumer.start(), 60)
    seen = 0
    try:
        started, cpu_started = time.perf_counter(), time.process_time()
        while seen < n:
            for records in (await consumer.getmany(timeout_ms=1000, max_records=10_000)).values():
                seen += len(records)
        return Rate(n / (time.perf_counter() - started), n / (time.process_time() - cpu_started))
    finally:
        await consumer.stop()


def run_pipeline(settings: Settings, n: int, workers: int, with_stats: bool, logdir: Path) -> Rate:
    """Start the workers, wait until everything is loaded; returns events/s (wall, per worker CPU s)."""
    procs = [WorkerProcess(settings.with_overrides(stats_enabled=with_stats), logdir / f"worker{i}.log")
             for i in range(workers)]
    conn = client(settings)
    try:
        for worker in procs:
            worker.start(timeout=120)
        # Workers that got ready first may have started already: count only what is left.
        started, cpu_started = time.perf_counter(), sum(w.cpu_seconds() for w in procs)
        loaded = head_start = visible_count(conn)
        if head_start >= n:
            raise RuntimeError(f"the first worker(s) loaded all {n:,} events before the last one was ready: "
                               "nothing left to measure; use more --events")
        with tqdm(total=n, initial=loaded, desc="pipeline", unit="ev", mininterval=2) as bar:
            while loaded < n:
                if not all(w.alive() for w in procs):
                    raise RuntimeError(f"a worker died; logs in {logdir}")
                time.sleep(0.5)
                current = visible_count(conn)  # FINAL: copies re-delivered after a rebalance do not count
                bar.update(current - loaded)
                loaded = current
        while with_stats and not asyncio.run(group_caught_up(settings)):
            time.sleep(0.25)
        elapsed = time.perf_counter() - started
        cpu = sum(w.cpu_seconds() for w in procs) - cpu_started
        if loaded != n:
            raise RuntimeError(f"expected {n} distinct rows, found {loaded}")
        return Rate((n - head_start) / elapsed, (n - head_start) / cpu)
    finally:
        for worker in procs:
            worker.stop()
        conn.disconnect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--with-stats", dest="with_stats", action="store_true", help="loader + stats agents")
    mode.add_argument("--loader-only", dest="with_stats", action="store_false", help="loader agent only (default)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    if args.events < 1 or args.workers < 1:
        parser.error("--events and --workers must be >= 1")

    suffix = uuid.uuid4().hex[:8]
    base = Settings.from_env()
    settings = base.with_clickhouse_database(
        f"bench_{suffix}", topic_interactions=f"bench-interactions-{suffix}", topic_dlq=f"bench-dlq-{suffix}",
        app_id=f"bench-{suffix}", topic_partitions=args.partitions,
    )
    print(f"generating {args.events:,} events ...", flush=True)
    messages = simulated_messages(args.events)
    asyncio.run(ensure_topics(settings))
    asyncio.run(produce_messages(settings, messages, total=len(messages)))
    del messages
    migrate(settings)
    try:
        baseline = asyncio.run(bare_consumer_rate(settings, args.events))
        with tempfile.TemporaryDirectory(prefix="bench-ingest-") as logdir:
            rate = run_pipeline(settings, args.events, args.workers, args.with_stats, Path(logdir))
    finally:
        conn = client(settings, database="default")
        conn.execute(f"DROP DATABASE IF EXISTS bench_{suffix}")
        conn.disconnect()
        asyncio.run(drop_topics(settings))  # the source pair and the app's batch and changelog topics
    label = "loader+stats" if args.with_stats else "loader only"
    print(f"pipeline ({label}, {args.workers} worker(s), {args.partitions} partitions): "
          f"{rate.wall:,.0f} events/s wall, {rate.cpu:,.0f} events per worker CPU-second")
    print(f"baseline (bare aiokafka consumer, same topic): "
          f"{baseline.wall:,.0f} events/s wall, {baseline.cpu:,.0f} events per CPU-second")
    print(f"ratio pipeline/baseline: {rate.wall / baseline.wall:.3f} wall, {rate.cpu / baseline.cpu:.3f} CPU")


if __name__ == "__main__":
    main()
