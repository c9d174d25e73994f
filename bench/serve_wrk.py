"""How bench/serve.py drives its servers: start one, wait for its lists, pin it, run wrk against it,
read its CPU time; and prime its caches by asking every user once."""
from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.localstack import proc  # noqa: E402
from app.settings import REPO_ROOT  # noqa: E402

# Every user in turn, from `first` on (one Lua state per wrk thread: run with -t1).
PRIME_LUA = """
local id = {first} - 1
request = function()
  id = id + 1
  if id > {last} then id = {first} end
  return wrk.format("GET", "/v1/users/" .. id .. "/recommendations?limit=10")
end
"""


def start(argv: list[str], env: dict[str, str], port: int, logfile: Path) -> subprocess.Popen:
    with open(logfile, "wb") as out:
        server = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                  cwd=REPO_ROOT)
    if not proc.wait_for(lambda: proc.port_open("127.0.0.1", port), 60, alive=lambda: server.poll() is None):
        server.kill()
        raise SystemExit(f"server {argv} did not start:\n{proc.tail(logfile, 30)}")
    return server


def wait_in_memory(url: str, versions: tuple[str, ...], timeout: float = 300.0) -> None:
    """Until the server's /metrics shows the user lists of every version in memory."""
    deadline = time.monotonic() + timeout
    pattern = r'cinerec_served_lists_in_memory_bytes\{kind="users",version="([^"]+)"\}'
    while True:
        held = set(re.findall(pattern, requests.get(f"{url}/metrics", timeout=10).text))
        if held >= set(versions):
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"{url}: lists of {set(versions) - held} not in memory after {timeout:.0f} s")
        time.sleep(0.5)


def pin(pid: int, cpu: int) -> None:
    """One core per side (server vs wrk) on a 2-core box, so neither steals the other's.

    Every thread of the process: BLAS and Kafka client threads started before the
    pinning would otherwise still run on the other core (threads started later
    inherit the affinity)."""
    if not (hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() > cpu):
        return
    tasks = Path(f"/proc/{pid}/task")
    for tid in [int(t.name) for t in tasks.iterdir()] if pid and tasks.exists() else [pid]:
        with contextlib.suppress(ProcessLookupError):  # a thread that just ended
            os.sched_setaffinity(tid, {cpu})


def cpu_and_faults(pid: int) -> tuple[float, int]:
    """User + system CPU seconds of a process so far, and its page faults (minor + major: a first
    touch of a mapped file's page is one) (/proc/<pid>/stat fields 10, 12, 14, 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), int(fields[7]) + int(fields[9])


def wrk(url: str, script: Path, connections: int, duration: int, pid: int) -> dict[str, float]:
    """Run wrk; requests/s, p50/p99 in ms, errors, the server's CPU microseconds and page faults
    per request, and the machine's 1-minute load average when the run ended.

    CPU per request is the steadier figure on a shared machine: other tenants
    steal wall time (and so requests/s), not the server's own CPU time.
    """
    cpu_before, faults_before = cpu_and_faults(pid)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, timeout=duration + 60, check=True,
        preexec_fn=lambda: pin(0, 1),
    ).stdout
    cpu_after, faults_after = cpu_and_faults(pid)
    cpu = cpu_after - cpu_before
    unit = {"us": 1e-3, "ms": 1.0, "s": 1e3}

    def percentile(p: str) -> float:
        value, suffix = re.search(rf"^\s*{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(value) * unit[suffix]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    requests_done = int(re.search(r"(\d+) requests in", out).group(1))
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "cpu_us": cpu / max(requests_done, 1) * 1e6,
        "faults": (faults_after - faults_before) / max(requests_done, 1),
        "p50": percentile("50"),
        "p99": percentile("99"),
        "errors": float(errors.group(1)) if errors else 0.0,
        "socket_errors": float(sum(map(int, socket_errors.groups()))) if socket_errors else 0.0,
        "load": os.getloadavg()[0],
    }


def prime(url: str, first: int, last: int, folder: Path, connections: int, pid: int) -> int:
    """Ask every user of `first..last` once (in 5 s wrk runs, each going on where the last stopped), so a
    measurement sees a server's caches as they are after the users came back once; returns requests made."""
    done = 0
    script = folder / "prime.lua"
    while first + done <= last:
        script.write_text(PRIME_LUA.format(first=first + done, last=last))
        out = subprocess.run(["wrk", "-t1", f"-c{connections}", "-d5s", "-s", str(script), url],
                             capture_output=True, text=True, timeout=65, check=True,
                             preexec_fn=lambda: pin(0, 1)).stdout
        done += int(re.search(r"(\d+) requests in", out).group(1))
    return done


def cache_hits(url: str) -> tuple[float, float]:
    """(hits, misses) of the server's recent-watches cache so far, from /metrics ((0, 0) without one)."""
    text = requests.get(f"{url}/metrics", timeout=10).text
    found = [re.search(rf"^cinerec_recent_cache_{kind}_total (\S+)$", text, re.M) for kind in ("hits", "misses")]
    return tuple(float(m.group(1)) if m else 0.0 for m in found)  # type: ignore[return-value]
