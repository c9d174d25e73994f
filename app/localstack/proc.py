"""Process plumbing shared by the local services: pid files, liveness, ports,
background start, graceful stop, waiting, apt installs and log tails.

Everything here is service-agnostic so that kafka/clickhouse/redis modules only
describe *what* to run, not *how* to babysit it.
"""
from __future__ import annotations

import fcntl
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from collections import deque
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

log = logging.getLogger(__name__)


class ServiceError(RuntimeError):
    """A local service cannot be installed, started or stopped; the message says why."""


def read_pid(pidfile: Path) -> int | None:
    """The pid recorded in `pidfile`, or None when there is no usable one."""
    try:
        return int(pidfile.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def cmdline(pid: int, attempts: int = 20) -> str:
    """The command line of a live process ('' when it is gone or not ours to read).

    Right after exec the kernel briefly shows an empty command line; retry a
    little so a just-spawned server is not mistaken for a foreign process.
    """
    for _ in range(attempts):
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return ""
        if raw:
            return raw.replace(b"\0", b" ").decode(errors="replace").strip()
        time.sleep(0.025)
    return ""


def is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


def owned_pid(pidfile: Path, marker: str) -> int | None:
    """The pid from `pidfile` if that process is alive and still runs `marker`.

    Checking the command line guards against a recycled pid: after a reboot the
    number in a stale pid file may belong to an unrelated process we must not kill.
    """
    pid = read_pid(pidfile)
    if pid is None or is_zombie(pid) or marker not in cmdline(pid):
        return None
    return pid


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when something accepts TCP connections on host:port.

    A connect to a free port in the ephemeral range can "succeed" by TCP
    simultaneous open with itself (same local and remote address); that is no listener.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            return sock.getsockname() != sock.getpeername()
    except OSError:
        return False


def spawn(argv: Sequence[str], logfile: Path, pidfile: Path, cwd: Path | None = None) -> int:
    """Start `argv` in the background in its own session, output appended to `logfile`.

    Its own session means Ctrl-C on the terminal that ran `services up` does not
    take the service down with it.
    """
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with open(logfile, "ab") as out:
        proc = subprocess.Popen(
            list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=cwd, start_new_session=True,
        )
    pidfile.write_text(f"{proc.pid}\n")
    return proc.pid


def run(argv: Sequence[str], what: str, timeout: float, cwd: Path | None = None) -> str:
    """Run a setup command to completion; raise ServiceError with its output on failure."""
    try:
        done = subprocess.run(
            list(argv), cwd=cwd, timeout=timeout, capture_output=True, text=True, stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError:
        raise ServiceError(f"{what}: {argv[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise ServiceError(f"{what}: `{' '.join(argv)}` did not finish within {timeout:.0f}s") from None
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip().splitlines()[-20:]
        raise ServiceError(f"{what} failed (exit {done.returncode}):\n  " + "\n  ".join(output))
    return done.stdout


def apt_install(packages: Sequence[str], timeout: float = 600.0) -> None:
    """`apt-get install -y`; runs `apt-get update` and retries once if the first try fails."""
    if shutil.which("apt-get") is None:
        raise ServiceError(f"need {' '.join(packages)} but apt-get is not available; install them by hand")
    env_argv = ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q", *packages]
    log.info("installing %s with apt-get", " ".join(packages))
    try:
        run(env_argv, f"apt-get install {' '.join(packages)}", timeout)
    except ServiceError:
        run(["apt-get", "update", "-q"], "apt-get update", timeout)
        run(env_argv, f"apt-get install {' '.join(packages)}", timeout)


def wait_for(check: Callable[[], bool], timeout: float, alive: Callable[[], bool], interval: float = 0.5) -> bool:
    """Poll `check` until it is true (True), `alive` turns false or `timeout` passes (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        if not alive():
            return check()
        time.sleep(interval)
    return check()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not is_zombie(pid)


def stop(pid: int, timeout: float) -> bool:
    """SIGTERM, wait up to `timeout`, then SIGKILL. True if it needed the kill."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    if wait_for(lambda: not pid_alive(pid), timeout, alive=lambda: True, interval=0.2):
        return False
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    wait_for(lambda: not pid_alive(pid), 5.0, alive=lambda: True, interval=0.1)
    return True


@contextmanager
def exclusive(lockfile: Path, timeout: float) -> Iterator[None]:
    """Hold an exclusive lock on `lockfile`: two `make test` runs calling
    `services up` at once must not both start a server."""
    lockfile.parent.mkdir(parents=True, exist_ok=True)
    with open(lockfile, "a") as fh:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ServiceError(f"another `cinerec services` holds {lockfile} for over {timeout:.0f}s") from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log file, for error messages."""
    try:
        with open(path, errors="replace") as fh:
            return "".join(deque(fh, maxlen=lines)).rstrip()
    except FileNotFoundError:
        return f"(no log at {path})"
