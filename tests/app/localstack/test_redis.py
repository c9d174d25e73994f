"""The Redis command line keeps state in LOCAL_DIR and persists nothing."""
from __future__ import annotations

from pathlib import Path

from app.localstack.redis import Redis
from app.settings import Settings


def test_redis_runs_daemonized_without_persistence_in_the_local_dir(tmp_path: Path) -> None:
    argv = Redis(Settings.from_env({"LOCAL_DIR": str(tmp_path)})).argv()
    opts = dict(zip(argv[1::2], argv[2::2]))
    assert argv[0] == "redis-server"
    assert opts["--daemonize"] == "yes"
    assert (opts["--save"], opts["--appendonly"]) == ("", "no")
    assert (opts["--bind"], opts["--port"]) == ("127.0.0.1", "6379")
    assert opts["--dir"] == str(tmp_path / "redis")
    assert opts["--pidfile"] == str(tmp_path / "redis" / "redis.pid")
