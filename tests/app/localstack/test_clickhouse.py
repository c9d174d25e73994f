"""Pure parts of the ClickHouse launcher: the rendered config keeps every path
inside LOCAL_DIR and listens where the settings say."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from app.localstack.clickhouse import HTTP_PORT, ClickHouse
from app.settings import Settings


def test_config_paths_stay_in_the_local_dir(tmp_path: Path) -> None:
    ch = ClickHouse(Settings.from_env({"LOCAL_DIR": str(tmp_path)}))
    ch.prepare()
    root = ET.parse(ch.dir / "config.xml").getroot()
    assert root.tag == "yandex"  # what 18.16 expects
    assert root.findtext("tcp_port") == "9000"
    assert root.findtext("http_port") == str(HTTP_PORT)
    assert root.findtext("listen_host") == "127.0.0.1"
    paths = [root.findtext(tag) for tag in ("path", "tmp_path", "user_files_path", "users_config")]
    paths += [root.findtext("logger/log"), root.findtext("logger/errorlog")]
    assert all(p and p.startswith(str(ch.dir)) for p in paths), paths
    for tag in ("path", "tmp_path", "user_files_path"):
        assert Path(root.findtext(tag)).is_dir()
    users = ET.parse(ch.dir / "users.xml").getroot()
    assert [ip.text for ip in users.findall("users/default/networks/ip")] == ["::1", "127.0.0.1"]


def test_server_is_started_with_the_rendered_config(tmp_path: Path) -> None:
    ch = ClickHouse(Settings.from_env({"LOCAL_DIR": str(tmp_path)}))
    assert ch.argv()[-1] == f"--config-file={tmp_path}/clickhouse/config.xml"
    assert ch.marker in ch.argv()[0]
