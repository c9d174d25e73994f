"""Ingestion benchmark: end-to-end events/s of the Faust pipeline vs a bare consumer.

    .venv/bin/python bench/ingest.py [--events 1000000] [--with-stats|--loader-only] [--workers N]
        [--partitions 4] [--store memory://|rocksdb://] [--standby N] [--profile DIR [--gil]] [--logdir DIR]

1. N simulated events (app.simulator) are produced to a fresh topic.
2. Baseline: a bare aiokafka consumer reads the same topic doing nothing.
3. Pipeline: `cinerec worker` subprocess(es) with a fresh app id and a fresh
   ClickHouse database, started after the events are in Kafka; the clock runs
   from "all workers ready" until every row is in ClickHouse (loader only) or,
   with stats, until the loader group has committed the end of the topic and
   the Faust group the end of the stats batch topics (every event counted).
Prints both rates and their ratio (pipeline / baseline), the machine's load
average beside each figure (a shared machine slows both; compare ratios and
per-CPU-second figures), when the loader finished versus the stats, and the
`Timer ... is overlapping` warnings the workers logged (a commit or another
timer waited behind a long synchronous step: the event loop was blocked).
`--profile DIR` records every worker with py-spy over the measured span and
prints where the CPU time went (bench/profile.py).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from concurrent.futures import ThreadPoolExecutor
import re
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Iterator, NamedTuple

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
from bench.profile import Recorder, summary  # noqa: E402

# mode's timers warn when one run of their body took longer than their interval
# (Faust's offset commit is the timer "commit": it waited behind something).
_OVERLAP = re.compile(r"Timer (?P<name>\S+) is overlapping \(interval=(?P<interval>[^ ]+) runtime=(?P<runtime>[0-9.]+)\)")


def simulated_messages(n: int, seed: int = 1) -> list[tuple[bytes, bytes]]:
    """n (key, value) messages of the simulated world over the last 30 days."""
    _, history = generate(users=max(n // 50, 100), films=2_000, events=n, seed=seed, end_ts=time.time() - 60)
    return list(wire.messages(iter(history), n))


def load() -> str:
    """The machine's 1-minute load average, to print beside a figure."""
    return f"load {os.getloadavg()[0]:.1f}"


class Rate(NamedTuple):
    wall: float  # events per second of wall time
    cpu: float  # events per CPU second of the measured process (robust to other load on the machine)
    load: str  # the machine's load average at the end of the measurement


class PipelineRun(NamedTuple):
    rate: Rate
    head_start: int  # events loaded before the clock started (the first worker(s) ready earlier)
    ready_s: float  # seconds from starting the workers until all were ready
    launch_rate: float  # all n events per second from starting the workers (start-up and rebalances included)
    machine_busy: float  # share of the machine's CPU time busy during the measured span (everyone's work)
    loader_s: float  # seconds until every row was in ClickHouse
    total_s: float  # seconds until everything was also counted in the stats (= loader_s without stats)
    overlaps: list[tuple[str, str, float]]  # (timer, interval, runtime) of each overlap warning
    services_cpu: dict[str, float]  # CPU seconds of the ClickHouse server and the broker over the measured span


def cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine so far (/proc/stat): busy = not idle, not iowait."""
    values = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(values) - values[3] - values[4], sum(values)


def service_cpu(procfs: Path = Path("/proc")) -> dict[str, float]:
    """CPU seconds used so far by the local ClickHouse server and Kafka broker (their share of the
    machine competes with the workers'; other users' queries on them count too)."""
    tick = os.sysconf("SC_CLK_TCK")
    found = {"clickhouse": 0.0, "kafka": 0.0}
    for proc in procfs.glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes()
            stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        name = "clickhouse" if b"clickhouse-server" in cmdline else "kafka" if b"kafka.Kafka" in cmdline else None
        if name:
            found[name] += (int(stat[11]) + int(stat[12])) / tick  # utime + stime
    return found


def overlap_warnings(logs: list[Path]) -> list[tuple[str, str, float]]:
    """The `Timer ... is overlapping` warnings in the workers' logs."""
    found = []
    for log in logs:
        for match in _OVERLAP.finditer(log.read_text(errors="replace")):
            found.append((match["name"], match["interval"], float(match["runtime"])))
    return found


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
        return Rate(n / (time.perf_counter() - started), n / (time.process_time() - cpu_started), load())
    finally:
        await consumer.stop()


def rows_at_least(conn, n: int) -> int:
    """Distinct rows, read with FINAL only once there are at least n rows in all: a FINAL count
    of a million rows costs ClickHouse ~0.15 CPU-s, and polling it twice a second took a
    quarter of a core from the pipeline it measures (copies re-delivered after a rebalance
    make the plain count too high, never too low)."""
    rows = conn.execute("SELECT count() FROM interactions")[0][0]
    return rows if rows < n else visible_count(conn)


def run_pipeline(settings: Settings, n: int, workers: int, with_stats: bool, logdir: Path,
                 profile: Path | None = None, gil: bool = False) -> PipelineRun:
    """Start the workers, wait until everything is loaded; returns events/s (wall, per worker CPU s)."""
    procs = [WorkerProcess(settings.with_overrides(stats_enabled=with_stats), logdir / f"worker{i}.log")
             for i in range(workers)]
    conn = client(settings)
    recorders: list[Recorder] = []
    try:
        # all at once: started one after the other, the first worker loaded much of the topic
        # alone (and the next one then recovered its tables) before the clock started
        launched = time.perf_counter()
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(lambda w: w.start(timeout=180), procs))
        ready_s = time.perf_counter() - launched
        if profile is not None:
            recorders = [Recorder(w.process.pid, profile / f"worker{i}.raw", gil=gil) for i, w in enumerate(procs)]
        # Workers that got ready first may have started already: count only what is left.
        started, cpu_started, machine_started = time.perf_counter(), sum(w.cpu_seconds() for w in procs), cpu_times()
        services_started = service_cpu()
        loaded = head_start = visible_count(conn)
        if head_start >= n:
            raise RuntimeError(f"the first worker(s) loaded all {n:,} events before the last one was ready: "
                               "nothing left to measure; use more --events")
        with tqdm(total=n, initial=loaded, desc="pipeline", unit="ev", mininterval=2) as bar:
            while loaded < n:
                if not all(w.alive() for w in procs):
                    raise RuntimeError(f"a worker died; logs in {logdir}")
                time.sleep(0.5)
                current = rows_at_least(conn, n)
                bar.update(current - loaded)
                loaded = current
        loader_s = time.perf_counter() - started
        while with_stats and not asyncio.run(group_caught_up(settings)):
            if not all(w.alive() for w in procs):
                raise RuntimeError(f"a worker died; logs in {logdir}")
            time.sleep(0.25)
        finished = time.perf_counter()
        elapsed = finished - started
        cpu = sum(w.cpu_seconds() for w in procs) - cpu_started
        machine_now = cpu_times()
        services = {name: cpu - services_started[name] for name, cpu in service_cpu().items()}
        machine_busy = (machine_now[0] - machine_started[0]) / max(1, machine_now[1] - machine_started[1])
        rate = Rate((n - head_start) / elapsed, (n - head_start) / cpu, load())
        if loaded != n:
            raise RuntimeError(f"expected {n} distinct rows, found {loaded}")
        for recorder in recorders:
            print(f"\n--- py-spy profile {recorder.output} (measured span) ---\n{summary(recorder.stop())}")
        return PipelineRun(rate, head_start, ready_s, n / (finished - launched), machine_busy, loader_s, elapsed,
                           overlap_warnings([w.logfile for w in procs]), services)
    finally:
        for recorder in recorders:
            recorder.stop()
        for worker in procs:
            worker.stop()
        conn.disconnect()


@contextlib.contextmanager
def fresh_pipeline(partitions: int, store: str | None = None) -> Iterator[Settings]:
    """Settings of a fresh app id, topic pair and ClickHouse database (migrated), all dropped after."""
    suffix = uuid.uuid4().hex[:8]
    settings = Settings.from_env().with_clickhouse_database(
        f"bench_{suffix}", topic_interactions=f"bench-interactions-{suffix}", topic_dlq=f"bench-dlq-{suffix}",
        app_id=f"bench-{suffix}", topic_partitions=partitions, **({"faust_store": store} if store else {}),
    )
    asyncio.run(ensure_topics(settings))
    migrate(settings)
    try:
        yield settings
    finally:
        conn = client(settings, database="default")
        conn.execute(f"DROP DATABASE IF EXISTS bench_{suffix}")
        conn.disconnect()
        asyncio.run(drop_topics(settings))  # the source pair and the app's batch and changelog topics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--with-stats", dest="with_stats", action="store_true", help="loader + stats agents")
    mode.add_argument("--loader-only", dest="with_stats", action="store_false", help="loader agent only (default)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--store", default=None, help="FAUST_STORE of the workers (default: the setting's)")
    parser.add_argument("--standby", type=int, default=None, metavar="N",
                        help="TABLE_STANDBY_REPLICAS of the workers (default: the setting's)")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="record each worker with py-spy over the measured span into DIR and summarise")
    parser.add_argument("--gil", action="store_true",
                        help="with --profile: sample only the thread holding the GIL (py-spy --gil)")
    parser.add_argument("--logdir", type=Path, default=None, metavar="DIR",
                        help="keep the workers' logs in DIR (default: a temporary directory)")
    args = parser.parse_args()
    if args.events < 1 or args.workers < 1:
        parser.error("--events and --workers must be >= 1")

    print(f"generating {args.events:,} events ...", flush=True)
    messages = simulated_messages(args.events)
    with fresh_pipeline(args.partitions, args.store) as settings:
        if args.standby is not None:
            settings = settings.with_overrides(table_standby_replicas=args.standby)
        asyncio.run(produce_messages(settings, messages, total=len(messages)))
        del messages
        baseline = asyncio.run(bare_consumer_rate(settings, args.events))
        with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
            run = run_pipeline(settings, args.events, args.workers, args.with_stats, args.logdir or Path(tmp),
                               args.profile, args.gil)
    rate = run.rate
    label = "loader+stats" if args.with_stats else "loader only"
    print(f"\nmachine: {os.cpu_count()} cores; load average now {', '.join(f'{x:.1f}' for x in os.getloadavg())} "
          "(1, 5, 15 min): other work slows both figures, compare the ratios")
    print(f"pipeline ({label}, {args.workers} worker(s), {args.partitions} partitions, {settings.faust_store}, "
          f"standby replicas {settings.table_standby_replicas}): "
          f"{rate.wall:,.0f} events/s wall, {rate.cpu:,.0f} events per worker CPU-second ({rate.load})")
    print(f"baseline (bare aiokafka consumer, same topic): "
          f"{baseline.wall:,.0f} events/s wall, {baseline.cpu:,.0f} events per CPU-second ({baseline.load})")
    print(f"ratio pipeline/baseline: {rate.wall / baseline.wall:.3f} wall, {rate.cpu / baseline.cpu:.3f} CPU")
    print(f"workers ready after {run.ready_s:.1f}s; {run.head_start:,} events loaded before the clock started "
          f"(not counted); machine CPU busy {run.machine_busy:.0%} during the measured span (all processes); "
          f"from starting the workers (start-up and rebalances included): {run.launch_rate:,.0f} events/s")
    counted = (args.events - run.head_start) / 1e6
    print("CPU-s per million events over the measured span: workers "
          f"{1 / rate.cpu * 1e6:.2f}, " + ", ".join(f"{name} server {cpu / counted:.2f}"
                                                 for name, cpu in run.services_cpu.items()))
    if args.with_stats:
        print(f"loader done after {run.loader_s:.1f}s, stats done after {run.total_s:.1f}s")
    commits = [o for o in run.overlaps if o[0] == "commit"]
    print(f"timer overlap warnings: {len(run.overlaps)} ({len(commits)} commit)"
          + (f"; longest {max(r for _, _, r in run.overlaps):.1f}s: "
             + ", ".join(sorted({f"{name} (interval {interval})" for name, interval, _ in run.overlaps}))
             if run.overlaps else ""))


if __name__ == "__main__":
    main()
