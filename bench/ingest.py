"""Ingestion benchmark: end-to-end events/s of the Faust pipeline vs a bare consumer.

    .venv/bin/python bench/ingest.py [--events 1000000] [--with-stats|--loader-only] [--workers N]

1. N simulated events (app.simulator) are produced to a fresh topic.
2. Baseline: a bare aiokafka consumer reads the same topic doing nothing.
3. Pipeline: `cinerec worker` subprocess(es) with a fresh app id and a fresh
   ClickHouse database, started after the events are in Kafka; the clock runs
   from "all workers ready" until every row is in ClickHouse (loader only) or,
   with stats, until the consumer group has also committed the end offsets
   (all agents acked every event).
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

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.settings import Settings  # noqa: E402
from app.simulator import wire  # noqa: E402
from app.simulator.history import generate_events  # noqa: E402
from app.simulator.world import build_world  # noqa: E402
from app.storage.clickhouse import client, migrate  # noqa: E402
from app.storage.kafka_admin import admin_client, ensure_topics  # noqa: E402
from app.worker_process import WorkerProcess  # noqa: E402

DAY_S = 86_400.0


def simulated_messages(n: int, seed: int = 1) -> list[tuple[bytes, bytes]]:
    """n (key, value) messages of the simulated world over the last 30 days."""
    now = time.time()
    world = build_world(users=max(n // 50, 100), films=2_000, seed=seed, window_start=now - 30 * DAY_S, window_end=now - 60)
    events = generate_events(world, n, np.random.default_rng(seed), np.random.default_rng(seed + 1))
    return list(wire.messages(iter(events), n))


async def produce(settings: Settings, messages: list[tuple[bytes, bytes]]) -> None:
    """Fast bulk produce: one batch per partition at a time, keys placed by the default partitioner."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, max_batch_size=1 << 20,
                                request_timeout_ms=60_000)
    await asyncio.wait_for(producer.start(), 30)
    partitioner = DefaultPartitioner()
    partitions = list(range(settings.topic_partitions))
    batches = {p: producer.create_batch() for p in partitions}
    sends = []
    try:
        for key, value in tqdm(messages, desc="produce", unit="ev", mininterval=2):
            p = partitioner(key, partitions, partitions)
            if batches[p].append(key=key, value=value, timestamp=None) is None:
                batches[p].close()
                sends.append(await producer.send_batch(batches[p], settings.topic_interactions, partition=p))
                batches[p] = producer.create_batch()
                batches[p].append(key=key, value=value, timestamp=None)
        for p, batch in batches.items():
            batch.close()
            sends.append(await producer.send_batch(batch, settings.topic_interactions, partition=p))
        await asyncio.wait_for(asyncio.gather(*sends), 300)
    finally:
        await producer.stop()


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


async def group_done(settings: Settings) -> bool:
    """True when the worker's consumer group committed the end offset of every partition."""
    tps = [TopicPartition(settings.topic_interactions, p) for p in range(settings.topic_partitions)]
    async with admin_client(settings) as admin:
        committed = await admin.list_consumer_group_offsets(settings.app_id, partitions=tps)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=30_000)
    await asyncio.wait_for(consumer.start(), 30)
    try:
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    return all(committed.get(tp) is not None and committed[tp].offset >= ends[tp] for tp in tps)


def run_pipeline(settings: Settings, n: int, workers: int, with_stats: bool, logdir: Path) -> Rate:
    """Start the workers, wait until everything is loaded; returns events/s (wall, per worker CPU s)."""
    procs = [WorkerProcess(settings.with_overrides(stats_enabled=with_stats), logdir / f"worker{i}.log")
             for i in range(workers)]
    conn = client(settings)
    try:
        for worker in procs:
            worker.start(timeout=120)
        started = time.perf_counter()
        cpu_started = sum(w.cpu_seconds() for w in procs)
        loaded = 0
        with tqdm(total=n, desc="pipeline", unit="ev", mininterval=2) as bar:
            while loaded < n:
                if not all(w.alive() for w in procs):
                    raise RuntimeError(f"a worker died; logs in {logdir}")
                time.sleep(0.25)
                current = conn.execute("SELECT count() FROM interactions")[0][0]
                bar.update(current - loaded)
                loaded = current
        while with_stats and not asyncio.run(group_done(settings)):
            time.sleep(0.25)
        elapsed = time.perf_counter() - started
        cpu = sum(w.cpu_seconds() for w in procs) - cpu_started
        final = conn.execute("SELECT count() FROM interactions FINAL")[0][0]
        if final != n:
            raise RuntimeError(f"expected {n} distinct rows, found {final}")
        return Rate(n / elapsed, n / cpu)
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
    db_base, _, _ = base.clickhouse_url.rpartition("/")
    settings = base.with_overrides(
        topic_interactions=f"bench-interactions-{suffix}", topic_dlq=f"bench-dlq-{suffix}",
        app_id=f"bench-{suffix}", clickhouse_url=f"{db_base}/bench_{suffix}", topic_partitions=args.partitions,
    )
    print(f"generating {args.events:,} events ...", flush=True)
    messages = simulated_messages(args.events)
    asyncio.run(ensure_topics(settings))
    asyncio.run(produce(settings, messages))
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
    label = "loader+stats" if args.with_stats else "loader only"
    print(f"pipeline ({label}, {args.workers} worker(s), {args.partitions} partitions): "
          f"{rate.wall:,.0f} events/s wall, {rate.cpu:,.0f} events per worker CPU-second")
    print(f"baseline (bare aiokafka consumer, same topic): "
          f"{baseline.wall:,.0f} events/s wall, {baseline.cpu:,.0f} events per CPU-second")
    print(f"ratio pipeline/baseline: {rate.wall / baseline.wall:.3f} wall, {rate.cpu / baseline.cpu:.3f} CPU")


if __name__ == "__main__":
    main()
