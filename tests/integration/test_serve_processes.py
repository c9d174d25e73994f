"""`cinerec serve --processes N`: N real processes on one port (SO_REUSEPORT), sharing the host's
in-memory lists; a process that dies is replaced; SIGTERM stops them all (real Redis, db 2)."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from app.settings import Settings
from tests.integration.web_support import publish_version, serve_process, sync_redis

pytestmark = [pytest.mark.integration, pytest.mark.redis_db(2), pytest.mark.slow]
DEADLINE_S = 60.0


def pids_answering(url: str, want: int) -> set[int]:
    """Ask /health on fresh connections until `want` distinct processes answered (or the deadline).

    A connection the kernel had queued on a process that just crashed is reset
    (SO_REUSEPORT keeps one accept queue per process): retried, as a client would."""
    seen: set[int] = set()
    deadline = time.monotonic() + DEADLINE_S
    while len(seen) < want and time.monotonic() < deadline:
        try:
            seen.add(requests.get(f"{url}/health", timeout=10, headers={"Connection": "close"}).json()["pid"])
        except requests.ConnectionError:
            continue
    return seen


def test_processes_share_the_port_answer_alike_and_are_replaced(redis_settings: Settings, tmp_path: Path) -> None:
    published = publish_version(sync_redis(redis_settings), "v1", seed=31, users=np.arange(1, 501))
    settings = redis_settings.with_overrides(local_dir=tmp_path)
    with serve_process(settings, tmp_path / "serve.log", "--processes", "2") as url:
        first = pids_answering(url, 2)
        assert len(first) == 2, first
        for user in (1, 2, 250, 500):
            body = requests.get(f"{url}/v1/users/{user}/recommendations?limit=10", timeout=10,
                                headers={"Connection": "close"}).json()
            assert [item["film_id"] for item in body["items"]] == published.user_recs[user]
        os.kill(min(first), signal.SIGKILL)  # a crash: the parent starts another
        replaced = pids_answering(url, 2)
        deadline = time.monotonic() + DEADLINE_S
        while min(first) in replaced or len(replaced) < 2:
            assert time.monotonic() < deadline, f"no replacement for {min(first)}: {replaced}"
            replaced = pids_answering(url, 2)
        assert max(first) in replaced
    for pid in replaced:  # SIGTERM to the parent (serve_process's exit) stopped every child
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert "serving process" in (tmp_path / "serve.log").read_text()
    served = list((tmp_path / "serving").iterdir())
    assert len([p for p in served if p.is_dir()]) == 1  # one copy of v1's lists for every process
