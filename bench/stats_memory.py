"""Worker memory per user held in the statistics tables (docs/scaling.md, "Cost as users grow").

    .venv/bin/python bench/stats_memory.py [--users 100000 300000] [--store memory:// rocksdb://]
        [--films 2000] [--events-per-user 3]

For each store and user count: a fresh topic gets `--events-per-user` events
of every user (a play, progress in it, then a play of another film: each user
ends with two recent films and two viewer entries), one `cinerec worker` with
statistics loads them, and once the stats caught up its resident memory
(VmRSS) is read. The baseline is the same worker's RSS when it got ready,
before any event (same run). Prints RSS, the growth per user and per 1M users,
the table entries, and for RocksDB the bytes on disk. The machine's load does
not change memory figures much, but Python's allocator keeps freed memory, so
read them as "what a worker holding N users needs".
"""
from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.events import Event  # noqa: E402
from app.localstack import proc  # noqa: E402
from app.producer import produce_messages, to_message  # noqa: E402
from app.storage.kafka_admin import group_caught_up  # noqa: E402
from app.worker_process import WorkerProcess  # noqa: E402
from bench.ingest import fresh_pipeline  # noqa: E402


def user_events(users: int, films: int, per_user: int, seed: int = 5) -> Iterator[tuple[bytes, bytes]]:
    """`per_user` events of each of `users` users, a minute apart, ending a day ago."""
    rnd = random.Random(seed)
    start = time.time() - 86_400 - per_user * 60
    kinds = ["play", "progress", "play", "progress", "complete"]
    for user in range(1, users + 1):
        film = rnd.randint(1, films)
        for i in range(per_user):
            kind = kinds[i % len(kinds)]
            if i and kind == "play":
                film = rnd.randint(1, films)
            yield to_message(Event(f"u{user}-{i}", user, film, kind, start + i * 60,
                                   watch_seconds=30.0 * i if kind != "play" else 0.0, duration_seconds=6000.0))


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def measure(users: int, store: str, films: int, per_user: int, partitions: int) -> dict:
    """RSS of a worker before and after it holds `users` users' stats."""
    with fresh_pipeline(partitions, store) as settings, tempfile.TemporaryDirectory(prefix="bench-mem-") as tmp:
        local = Path(tmp) / "local"
        settings = settings.with_overrides(local_dir=local, stats_enabled=True)
        with WorkerProcess(settings, Path(tmp) / "worker.log") as worker:
            idle = rss_bytes(worker.process.pid)
            asyncio.run(produce_messages(settings, user_events(users, films, per_user), total=users * per_user,
                                         desc=f"{users:,} users"))
            if not proc.wait_for(lambda: asyncio.run(group_caught_up(settings)), 1800, alive=worker.alive,
                                 interval=2.0):
                raise RuntimeError(f"the worker did not catch up; log {Path(tmp) / 'worker.log'}")
            loaded = rss_bytes(worker.process.pid)
        disk = sum(f.stat().st_size for f in local.rglob("*") if f.is_file())
    return {"users": users, "store": store, "idle": idle, "loaded": loaded, "disk": disk}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, nargs="+", default=[100_000, 300_000])
    parser.add_argument("--store", nargs="+", default=["memory://", "rocksdb://"])
    parser.add_argument("--films", type=int, default=2_000)
    parser.add_argument("--events-per-user", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    if min(args.users) < 1 or args.events_per_user < 1:
        parser.error("--users and --events-per-user must be >= 1")
    rows = [measure(n, store, args.films, args.events_per_user, args.partitions)
            for store in args.store for n in args.users]
    mib = 1024 * 1024
    print(f"\n{'store':<12} {'users':>10} {'RSS idle (baseline)':>20} {'RSS with users':>15} "
          f"{'growth/user':>12} {'per 1M users':>13} {'on disk':>10}")
    for row in rows:
        per_user = (row["loaded"] - row["idle"]) / row["users"]
        print(f"{row['store']:<12} {row['users']:>10,} {row['idle'] / mib:>16.0f} MiB {row['loaded'] / mib:>11.0f} MiB "
              f"{per_user:>10.0f} B {per_user * 1e6 / mib:>9.0f} MiB {row['disk'] / mib:>6.0f} MiB")
    print(f"each user: {args.events_per_user} events (2 recent films, 2 viewer entries); {args.films:,} films; "
          "baseline: the same worker's RSS before its first event")


if __name__ == "__main__":
    main()
