"""What `up`, `down` and `status` mean for any one local service.

A subclass says how to install, configure, launch and probe its server; this
class owns the lifecycle rules shared by all three (reuse what runs, never
start a duplicate next to a foreign server, stop only our own pid).
"""
from __future__ import annotations

import enum
import logging
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence
from urllib.parse import urlsplit

from app.localstack import proc
from app.localstack.proc import ServiceError
from app.settings import REPO_ROOT, Settings

log = logging.getLogger(__name__)

OPS_DIR = REPO_ROOT / "ops"


def render(template: str, dest: Path, **values: object) -> Path:
    """Fill `ops/<template>` ({name} placeholders) and write it to `dest`."""
    text = (OPS_DIR / template).read_text().format(**values)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(text)
    return dest


class State(enum.Enum):
    UP = "up"  # started by cinerec and answering
    EXTERNAL = "external"  # answering, but not ours (configured elsewhere, or already running)
    STARTING = "starting"  # our process is alive but does not answer (yet)
    DOWN = "down"


@dataclass(frozen=True)
class Status:
    name: str
    state: State
    address: str
    detail: str = ""


class LocalService:
    """One server run as a background process under `<local_dir>/<name>/`."""

    name: str = ""
    url_setting: str = ""  # Settings field holding this service's URL
    default_port: int = 0
    marker: str = ""  # substring of the server's command line, to recognise our pid
    start_timeout_s: float = 60.0
    stop_timeout_s: float = 20.0
    daemonizes: bool = False  # the server forks and writes its own pid file

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.local_dir / self.name
        self.pidfile = self.dir / f"{self.name}.pid"
        self.logfile = self.dir / f"{self.name}.log"

    # -- what a subclass provides -------------------------------------------
    def installed(self) -> bool:
        raise NotImplementedError

    def install(self) -> None:
        raise NotImplementedError

    def prepare(self) -> None:
        """Write config files and initialise data dirs (idempotent)."""
        raise NotImplementedError

    def argv(self) -> list[str]:
        raise NotImplementedError

    def speaks(self, timeout: float) -> bool:
        """True when a protocol-level request (ping, SELECT 1, metadata) succeeds."""
        raise NotImplementedError

    # -- shared lifecycle -----------------------------------------------------
    @property
    def host(self) -> str:
        return self._endpoint()[0]

    @property
    def port(self) -> int:
        return self._endpoint()[1]

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _endpoint(self) -> tuple[str, int]:
        url = getattr(self.settings, self.url_setting).split(";")[0]
        parts = urlsplit(url)
        return parts.hostname or "127.0.0.1", parts.port or self.default_port

    @property
    def external_configured(self) -> bool:
        return self.name in self.settings.external

    def answers(self, timeout: float = 2.0) -> bool:
        """Port open and protocol answering; the cheap port check first keeps
        client libraries from logging a traceback per poll while a server boots."""
        return proc.port_open(self.host, self.port, timeout) and self.speaks(timeout)

    def pid(self) -> int | None:
        return proc.owned_pid(self.pidfile, self.marker)

    def extra_listeners(self) -> list[str]:
        """Other addresses the server binds besides `address` (shown by the CLI)."""
        return []

    def failure_logs(self) -> Sequence[Path]:
        return [self.logfile]

    def status(self) -> Status:
        if self.external_configured:
            state = State.EXTERNAL if self.answers() else State.DOWN
            return Status(self.name, state, self.address, "configured in the environment")
        pid = self.pid()
        if pid is not None:
            state = State.UP if self.answers() else State.STARTING
            return Status(self.name, state, self.address, f"pid {pid}, logs {self.dir}")
        if proc.port_open(self.host, self.port):
            return Status(self.name, State.EXTERNAL, self.address, "not started by cinerec")
        return Status(self.name, State.DOWN, self.address)

    def up(self) -> Status:
        """Make the service answer; reuse a running one; raise ServiceError when it cannot."""
        if self.external_configured:
            if self.answers(timeout=self.settings.network_timeout_s):
                return Status(self.name, State.EXTERNAL, self.address, "configured in the environment; not started")
            raise ServiceError(f"{self.name}: {self.address} is configured in the environment but does not answer")
        pid = self.pid()
        if pid is None and proc.port_open(self.host, self.port):
            if self.answers(timeout=self.settings.network_timeout_s):
                return Status(
                    self.name, State.EXTERNAL, self.address,
                    "already running but not started by cinerec; left alone, no duplicate started",
                )
            raise ServiceError(f"{self.name}: port {self.address} is taken by something that does not speak {self.name}")
        if pid is not None and self.answers():
            return Status(self.name, State.UP, self.address, f"already running (pid {pid})")
        if pid is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            if not self.installed():
                log.info("%s: installing", self.name)
                self.install()
            self.prepare()
            self._launch()
        return self._await_answer()

    def _launch(self) -> None:
        log.info("%s: starting %s", self.name, shlex.join(self.argv()))
        if self.daemonizes:
            proc.run(self.argv(), f"starting {self.name}", timeout=self.start_timeout_s)
        else:
            proc.spawn(self.argv(), self.logfile, self.pidfile, cwd=self.dir)

    def _await_answer(self) -> Status:
        def alive() -> bool:
            # A daemonizing server writes its pid file a moment after the launcher exits.
            pid = proc.read_pid(self.pidfile)
            return self.daemonizes or (pid is not None and proc.pid_alive(pid))

        if proc.wait_for(self.answers, self.start_timeout_s, alive=alive):
            return Status(self.name, State.UP, self.address, f"started (pid {self.pid()}, logs {self.dir})")
        pid = self.pid()
        why = "exited" if pid is None else f"did not answer within {self.start_timeout_s:.0f}s and was stopped"
        if pid is not None:
            proc.stop(pid, self.stop_timeout_s)
        tails = "\n".join(f"--- {p} ---\n{proc.tail(p)}" for p in self.failure_logs())
        raise ServiceError(f"{self.name} on {self.address} {why}. Last log lines:\n{tails}")

    def down(self) -> Status:
        """Stop the process we started (by pid): SIGTERM, then SIGKILL after a timeout."""
        if self.external_configured:
            return Status(self.name, State.EXTERNAL, self.address, "configured in the environment; left alone")
        pid = self.pid()
        if pid is None:
            self.pidfile.unlink(missing_ok=True)
            foreign = proc.port_open(self.host, self.port)
            detail = "not started by cinerec; left alone" if foreign else "was not running"
            return Status(self.name, State.EXTERNAL if foreign else State.DOWN, self.address, detail)
        killed = proc.stop(pid, self.stop_timeout_s)
        self.pidfile.unlink(missing_ok=True)
        how = f"killed after {self.stop_timeout_s:.0f}s" if killed else "stopped"
        return Status(self.name, State.DOWN, self.address, f"{how} (pid {pid})")
