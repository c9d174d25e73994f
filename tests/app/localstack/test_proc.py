"""Process helpers against real child processes."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from app.localstack import proc

IGNORES_SIGTERM = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"


def test_read_pid_tolerates_missing_and_garbage_files(tmp_path: Path) -> None:
    pidfile = tmp_path / "x.pid"
    assert proc.read_pid(pidfile) is None
    pidfile.write_text("not a pid\n")
    assert proc.read_pid(pidfile) is None
    pidfile.write_text("123\n")
    assert proc.read_pid(pidfile) == 123


def test_spawned_process_is_owned_until_stopped(tmp_path: Path) -> None:
    pidfile, log = tmp_path / "sleep.pid", tmp_path / "sleep.log"
    pid = proc.spawn([sys.executable, "-c", "print('hello', flush=True); import time; time.sleep(60)"], log, pidfile)
    assert proc.read_pid(pidfile) == pid
    assert proc.owned_pid(pidfile, "time.sleep(60)") == pid
    assert proc.owned_pid(pidfile, "redis-server") is None  # pid alive but a different program
    assert proc.wait_for(lambda: "hello" in proc.tail(log), 30, alive=lambda: proc.pid_alive(pid))
    assert proc.stop(pid, timeout=10) is False  # SIGTERM sufficed
    assert not proc.pid_alive(pid)
    assert proc.owned_pid(pidfile, "time.sleep(60)") is None


def test_stop_kills_a_process_that_ignores_sigterm() -> None:
    child = subprocess.Popen([sys.executable, "-c", IGNORES_SIGTERM], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    assert proc.stop(child.pid, timeout=0.5) is True
    assert child.wait(timeout=10) == -9


def test_tail_returns_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert proc.tail(log, lines=3) == "line 97\nline 98\nline 99"
    assert "no log at" in proc.tail(tmp_path / "missing.log")


def test_a_failing_setup_command_reports_its_output() -> None:
    with pytest.raises(proc.ServiceError, match=r"formatting failed \(exit 2\):\n  disk full"):
        proc.run([sys.executable, "-c", "import sys; print('disk full'); sys.exit(2)"], "formatting", timeout=30)


def test_exclusive_lets_one_holder_in_at_a_time(tmp_path: Path) -> None:
    lock = tmp_path / "services.lock"
    with proc.exclusive(lock, timeout=1):
        with pytest.raises(proc.ServiceError, match="another `cinerec services` holds"):
            with proc.exclusive(lock, timeout=0.3):
                pass
    with proc.exclusive(lock, timeout=1):  # released after the first holder left
        assert lock.exists()
