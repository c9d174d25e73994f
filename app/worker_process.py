"""Run `cinerec worker` as a subprocess with given settings (tests, benchmarks).

The child reads its configuration from the environment only (app.settings), so
a `Settings` is turned back into environment variables here; each worker gets
its own web port and log file. Readiness is Faust's "Ready" log line, printed
after recovery, once the agents consume.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from dataclasses import fields
from pathlib import Path
from types import TracebackType

from app.localstack import proc
from app.settings import REPO_ROOT, Settings

READY_MARKER = "Ready"


def settings_env(settings: Settings) -> dict[str, str]:
    """Environment variables that make a child process see `settings` (names = upper-case fields)."""
    return {f.name.upper(): str(getattr(settings, f.name)) for f in fields(settings) if f.name != "external"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class WorkerProcess:
    """One `cinerec worker` child; `start()` returns once it is ready, `kill()` is a crash."""

    def __init__(self, settings: Settings, logfile: Path) -> None:
        self.settings = settings.with_overrides(web_port=free_port())
        self.logfile = logfile
        self.process: subprocess.Popen | None = None
        self._log_start = 0  # restarts append to the same log: look for "Ready" after this offset

    def start(self, timeout: float = 90.0) -> "WorkerProcess":
        env = {**os.environ, **settings_env(self.settings)}
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        with open(self.logfile, "ab") as out:
            self._log_start = out.tell()
            self.process = subprocess.Popen(
                [str(Path(sys.executable).parent / "cinerec"), "worker"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=REPO_ROOT,
            )
        if not proc.wait_for(self._ready, timeout, alive=self.alive, interval=0.2):
            log_tail = proc.tail(self.logfile, 30)
            self.stop()
            raise RuntimeError(f"worker did not get ready within {timeout:.0f}s; log {self.logfile}:\n{log_tail}")
        return self

    def _ready(self) -> bool:
        with open(self.logfile, "rb") as log:
            log.seek(self._log_start)
            return READY_MARKER.encode() in log.read()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the worker used so far: a rate that a busy machine does not skew."""
        fields_ = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields_[11]) + int(fields_[12])) / os.sysconf("SC_CLK_TCK")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no offset commit (crash simulation)."""
        if self.alive():
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, then SIGKILL after `timeout`."""
        if self.alive():
            proc.stop(self.process.pid, timeout)
            self.process.wait(timeout=10)

    def __enter__(self) -> "WorkerProcess":
        return self.start()

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
