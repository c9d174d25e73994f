"""ClickHouse from Debian's package (18.16 here), run with a config whose paths
all point into `<local_dir>/clickhouse/`, so it needs neither root-owned
directories nor a system service manager."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Sequence

from clickhouse_driver.errors import Error as ClickHouseError

from app.localstack import proc
from app.localstack.service import LocalService, render
from app.storage.clickhouse import client

HTTP_PORT = 8123
SEARCH_PATH = ("/usr/sbin", "/usr/bin", "/usr/local/bin")


def server_binary() -> str | None:
    """`clickhouse-server` on PATH or where the Debian package puts it (/usr/sbin is not on every PATH)."""
    return shutil.which("clickhouse-server") or shutil.which("clickhouse-server", path=":".join(SEARCH_PATH))


class ClickHouse(LocalService):
    name = "clickhouse"
    url_setting = "clickhouse_url"
    default_port = 9000
    marker = "clickhouse-server"
    start_timeout_s = 60.0
    stop_timeout_s = 30.0
    http_port = HTTP_PORT  # a throwaway second server (fault tests) sets its own

    def installed(self) -> bool:
        return server_binary() is not None

    def install(self) -> None:
        proc.apt_install(["clickhouse-server", "clickhouse-client"])

    def prepare(self) -> None:
        for sub in ("data", "tmp", "user_files", "format_schemas"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        render(
            "clickhouse/config.xml", self.dir / "config.xml",
            dir=self.dir, host=self.host, tcp_port=self.port, http_port=self.http_port,
        )
        render("clickhouse/users.xml", self.dir / "users.xml")

    def argv(self) -> list[str]:
        return [server_binary() or "clickhouse-server", f"--config-file={self.dir / 'config.xml'}"]

    def extra_listeners(self) -> list[str]:
        return [f"http {self.host}:{self.http_port}"]

    def failure_logs(self) -> Sequence[Path]:
        return [self.logfile, self.dir / "clickhouse-server.err.log"]

    def speaks(self, timeout: float) -> bool:
        conn = client(self.settings.with_overrides(network_timeout_s=timeout), database="default")
        try:
            return conn.execute("SELECT 1") == [(1,)]
        except (ClickHouseError, OSError, EOFError):  # "does not answer (yet)"
            return False
        finally:
            conn.disconnect()
