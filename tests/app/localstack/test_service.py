"""The shared lifecycle rules, exercised with a real throwaway server process
(`python -m http.server` on a free port) instead of Kafka/ClickHouse/Redis."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from app.localstack import proc
from app.localstack.service import LocalService, ServiceError, State
from app.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HttpServer(LocalService):
    name = "httpd"
    marker = "http.server"
    start_timeout_s = 30.0
    stop_timeout_s = 10.0

    def __init__(self, settings: Settings, port: int, argv: list[str] | None = None) -> None:
        super().__init__(settings)
        self._port = port
        self._argv = argv or [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]

    def _endpoint(self) -> tuple[str, int]:
        return "127.0.0.1", self._port

    def installed(self) -> bool:
        return True

    def prepare(self) -> None:
        """Nothing to configure."""

    def argv(self) -> list[str]:
        return self._argv

    def speaks(self, timeout: float) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self._port}/", timeout=timeout) as resp:
                return resp.status == 200
        except OSError:
            return False


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"LOCAL_DIR": str(tmp_path)})


@pytest.fixture
def server(settings: Settings) -> Iterator[HttpServer]:
    service = HttpServer(settings, free_port())
    yield service
    service.down()


def test_up_starts_once_then_reuses(server: HttpServer) -> None:
    first = server.up()
    assert first.state is State.UP and "started" in first.detail
    pid = server.pid()
    assert pid is not None and proc.read_pid(server.pidfile) == pid

    again = server.up()
    assert again.state is State.UP and f"already running (pid {pid})" in again.detail
    assert server.pid() == pid
    assert server.status().state is State.UP


def test_down_stops_our_process_and_is_idempotent(server: HttpServer) -> None:
    server.up()
    pid = server.pid()
    stopped = server.down()
    assert stopped.state is State.DOWN and f"pid {pid}" in stopped.detail
    assert not proc.pid_alive(pid)
    assert not server.pidfile.exists()
    assert server.down().detail == "was not running"
    assert server.status().state is State.DOWN


def test_a_foreign_server_on_the_port_is_reported_and_left_alone(server: HttpServer) -> None:
    foreign = subprocess.Popen(server.argv(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert proc.wait_for(lambda: server.answers(), 30, alive=lambda: foreign.poll() is None)
        status = server.up()
        assert status.state is State.EXTERNAL and "not started by cinerec" in status.detail
        assert server.pid() is None  # no duplicate was spawned
        assert server.down().state is State.EXTERNAL
        assert foreign.poll() is None  # still running
    finally:
        foreign.terminate()
        foreign.wait(timeout=10)


def test_a_port_taken_by_another_protocol_is_an_error(server: HttpServer) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", server.port))
        squatter.listen()
        with pytest.raises(ServiceError, match=f"port 127.0.0.1:{server.port} is taken"):
            server.up()


def test_a_server_that_dies_fails_with_the_tail_of_its_log(settings: Settings) -> None:
    crash = [sys.executable, "-c", "import sys; print('http.server: bad config line 3', flush=True); sys.exit(3)"]
    service = HttpServer(settings, free_port(), argv=crash)
    with pytest.raises(ServiceError) as err:
        service.up()
    assert "exited" in str(err.value)
    assert "bad config line 3" in str(err.value)


def test_a_stale_pid_file_of_another_program_is_not_ours(server: HttpServer) -> None:
    server.dir.mkdir(parents=True)
    server.pidfile.write_text(f"{os.getpid()}\n")  # alive, but runs pytest, not http.server
    assert server.pid() is None
    assert server.status().state is State.DOWN
