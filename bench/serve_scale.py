"""Serving cost as users grow: Redis memory per published version, publish time, and the web
process's memory with the version's lists in memory (issue 12 item 4, serving part).

    .venv/bin/python bench/serve_scale.py [--users 100000,1000000] [--recs 100] [--web]
    .venv/bin/python bench/serve_scale.py --users 10000000 --recs 20          # publish only

For each user count, into a Redis database of its own (default 13, flushed before and after):
1. Publish a synthetic version the way the trainer does (`write_ranked`: block-encoded lists, one
   MSET per 5,000 keys): a top-`--recs` list per user over `--films` films, a top-20 similar list
   per film, 64-d item factors, popular, meta and the pointer switch. The model's own top-n is not
   run (the lists are random): the publish time is Redis writing, what grows with users.
   Baseline in the same run: the same number of keys written as one small string each (MSET of
   8-byte values), i.e. Redis's per-key cost alone.
2. Redis memory per version: `used_memory` after minus before; the user lists (per user) apart
   from what does not grow with users (similar lists, factors: "films MiB").
3. With --web: `cinerec serve` (SERVE_MEMORY_MB = `--memory-mb`) brings the version's lists into
   memory; reported: the time it took, the size of the host's file (shared by every web process of
   the host, resident once the users are asked), the process's own memory (RssAnon) and its peak
   (VmHWM) after the build.
Machine load is printed beside each row: publish times move with other tenants' load; memory does not.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import redis
import requests
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.localstack import proc  # noqa: E402
from app.recsys.data.idmap import IdMap  # noqa: E402
from app.recsys.models.foldin import pack_factors  # noqa: E402
from app.recsys.training.publish import BATCH_KEYS, activate, write_ranked, write_titles  # noqa: E402
from app.settings import REPO_ROOT, Settings  # noqa: E402
from app.storage import redis_keys as keys  # noqa: E402
from app.worker_process import free_port, settings_env  # noqa: E402

VERSION = "20261201T000000Z-scale0"
SIMILAR = 20
FACTORS = 64


class SyntheticModel:
    def __init__(self, films: int, rng: np.random.Generator) -> None:
        self.items = IdMap(np.arange(1, films + 1))
        self.item_factors = rng.normal(scale=0.1, size=(films, FACTORS)).astype(np.float32)
        self.regularization, self.alpha = 0.1, 10.0


def used_memory(conn: redis.Redis) -> int:
    return int(conn.info("memory")["used_memory"])


def publish(conn: redis.Redis, users: int, recs: int, films: int, seed: int = 1) -> tuple[float, int, int]:
    """(seconds to publish a whole version: lists, similar, factors, meta, pointer;
    Redis bytes of the user lists; Redis bytes of the rest)."""
    rng = np.random.default_rng(seed)
    before = used_memory(conn)
    started = time.perf_counter()
    block = 5_000
    scores = np.round(np.sort(rng.random((block, recs)), axis=1)[:, ::-1], 5)
    with tqdm(total=users, desc=f"publish {users:,} users", unit="user", mininterval=2) as bar:
        for start in range(1, users + 1, block):
            owners = np.arange(start, min(start + block, users + 1))
            picked = rng.integers(1, films + 1, size=(len(owners), recs))
            write_ranked(conn, lambda u: keys.user_recs(VERSION, u), owners, picked, scores[: len(owners)])
            bar.update(len(owners))
    users_bytes = used_memory(conn) - before
    film_ids = np.arange(1, films + 1)
    sim = rng.integers(1, films + 1, size=(films, SIMILAR))
    write_ranked(conn, lambda f: keys.similar(VERSION, f), film_ids, sim, np.tile(np.linspace(1, 0.1, SIMILAR), (films, 1)))
    conn.set(keys.popular(VERSION), keys.encode_ranked(film_ids[:100].tolist(), np.linspace(100, 1, 100).tolist()))
    conn.set(keys.factors(VERSION), pack_factors(SyntheticModel(films, rng)))
    activate(conn, VERSION, {"version": VERSION, "trained_at": "synthetic", "n_users": users})
    seconds = time.perf_counter() - started
    return seconds, users_bytes, used_memory(conn) - before - users_bytes


def baseline_keys(conn: redis.Redis, count: int) -> tuple[float, int]:
    """(seconds, bytes) to write `count` keys of the same names holding 8 bytes each: Redis's per-key floor."""
    before = used_memory(conn)
    started = time.perf_counter()
    for start in range(1, count + 1, BATCH_KEYS):
        conn.mset({keys.user_recs(VERSION, u): b"12345678" for u in range(start, min(start + BATCH_KEYS, count + 1))})
    seconds = time.perf_counter() - started
    return seconds, used_memory(conn) - before


def proc_status(pid: int) -> dict[str, int]:
    """kB fields of /proc/<pid>/status."""
    text = Path(f"/proc/{pid}/status").read_text()
    return {k: int(v) for k, v in re.findall(r"^(\w+):\s+(\d+) kB", text, re.M)}


def web_memory(settings: Settings, memory_mb: int, folder: Path, timeout: float = 1800.0) -> dict[str, float]:
    """Start `cinerec serve`, wait for the users' lists in memory; seconds, file MiB, RssAnon/VmHWM MiB."""
    port = free_port()
    env = {**os.environ, **settings_env(settings), "LOCAL_DIR": str(folder), "SERVE_MEMORY_MB": str(memory_mb),
           "LOG_LEVEL": "info"}
    log = folder / "serve.log"
    with open(log, "wb") as out:
        server = subprocess.Popen([str(Path(sys.executable).parent / "cinerec"), "serve", "--port", str(port)],
                                  stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT)
    try:
        if not proc.wait_for(lambda: proc.port_open("127.0.0.1", port), 120, alive=lambda: server.poll() is None):
            raise SystemExit(f"cinerec serve did not start:\n{proc.tail(log, 30)}")
        started = time.monotonic()
        pattern = r'cinerec_served_lists_in_memory_bytes\{kind="users",version="[^"]+"\} (\S+)'
        while True:
            found = re.search(pattern, requests.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text)
            if found or "not kept in memory" in log.read_text():
                break
            if time.monotonic() - started > timeout:
                raise SystemExit(f"lists not in memory after {timeout:.0f} s:\n{proc.tail(log, 30)}")
            time.sleep(0.5)
        seconds = time.monotonic() - started
        status = proc_status(server.pid)
        files = sum(p.stat().st_size for p in (folder / "serving").rglob("*") if p.is_file())
        return {"seconds": seconds, "in_memory": bool(found), "file_mib": files / 2**20,
                "anon_mib": status.get("RssAnon", 0) / 1024, "peak_mib": status.get("VmHWM", 0) / 1024}
    finally:
        server.terminate()
        server.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", default="100000,1000000", help="comma-separated user counts")
    parser.add_argument("--recs", type=int, default=100, help="list length per user (ListSizes.recs: 100)")
    parser.add_argument("--films", type=int, default=20_000)
    parser.add_argument("--web", action="store_true", help="also measure `cinerec serve` with the lists in memory")
    parser.add_argument("--memory-mb", type=int, default=4096, help="SERVE_MEMORY_MB of the measured server")
    parser.add_argument("--redis-db", type=int, default=13)
    args = parser.parse_args()
    settings = Settings.from_env().with_redis_db(args.redis_db)
    conn = redis.Redis.from_url(settings.redis_url, socket_timeout=300, socket_connect_timeout=5)
    rows = []
    for users in [int(u) for u in args.users.split(",")]:
        conn.flushdb()
        base_s, base_bytes = baseline_keys(conn, users)
        conn.flushdb()
        seconds, users_bytes, rest_bytes = publish(conn, users, args.recs, args.films)
        row = {"users": users, "publish_s": seconds, "baseline_s": base_s,
               "redis_mib": (users_bytes + rest_bytes) / 2**20, "films_mib": rest_bytes / 2**20,
               "per_user_b": users_bytes / users, "baseline_per_key_b": base_bytes / users,
               "load": os.getloadavg()[0]}
        if args.web:
            with tempfile.TemporaryDirectory(prefix="serve-scale-") as tmp:
                row.update(web_memory(settings, args.memory_mb, Path(tmp)))
        conn.flushdb()
        rows.append(row)
        print(row, flush=True)
    print(f"\n{args.recs} recommendations per user, {args.films:,} films, {SIMILAR} similar per film; "
          f"{os.cpu_count()} cores, load average now {os.getloadavg()[0]:.2f} (shared machine)")
    print(f"{'users':>11} {'Redis MiB':>10} {'films MiB':>9} {'B/user':>7} {'key floor B':>11} {'publish s':>9} {'floor s':>8} "
          f"{'ratio':>6} {'load':>5}" + (f" {'web load s':>10} {'file MiB':>9} {'anon MiB':>9} {'peak MiB':>9}"
                                          if args.web else ""))
    for r in rows:
        line = (f"{r['users']:>11,} {r['redis_mib']:>10,.0f} {r['films_mib']:>9,.0f} {r['per_user_b']:>7,.0f} {r['baseline_per_key_b']:>11,.0f} "
                f"{r['publish_s']:>9.1f} {r['baseline_s']:>8.1f} {r['publish_s'] / r['baseline_s']:>6.1f} {r['load']:>5.1f}")
        if args.web:
            line += (f" {r['seconds']:>10.1f} {r['file_mib']:>9,.0f} {r['anon_mib']:>9,.0f} {r['peak_mib']:>9,.0f}"
                     + ("" if r["in_memory"] else "  (over the budget: hot users only)"))
        print(line)


if __name__ == "__main__":
    main()
