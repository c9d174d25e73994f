"""Redis from Debian's package, daemonized, no persistence (serving data is
republished by the trainer; Celery messages are transient here)."""
from __future__ import annotations

import shutil

import redis

from app.localstack import proc
from app.localstack.service import LocalService


class Redis(LocalService):
    name = "redis"
    url_setting = "redis_url"
    default_port = 6379
    marker = "redis-server"
    start_timeout_s = 15.0
    daemonizes = True

    def installed(self) -> bool:
        return shutil.which("redis-server") is not None

    def install(self) -> None:
        proc.apt_install(["redis-server"])

    def prepare(self) -> None:
        """Nothing to render: everything is on the command line."""

    def argv(self) -> list[str]:
        return [
            "redis-server", "--daemonize", "yes", "--bind", self.host, "--port", str(self.port),
            "--save", "", "--appendonly", "no", "--dir", str(self.dir),
            "--pidfile", str(self.pidfile), "--logfile", str(self.logfile),
        ]

    def speaks(self, timeout: float) -> bool:
        conn = redis.Redis(host=self.host, port=self.port, socket_timeout=timeout, socket_connect_timeout=timeout)
        try:
            return bool(conn.ping())
        except redis.RedisError:
            return False
        finally:
            conn.close()
