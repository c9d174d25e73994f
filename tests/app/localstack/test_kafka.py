"""Pure parts of the Kafka launcher: rendered config, cluster ids, command line."""
from __future__ import annotations

import base64
from pathlib import Path

from app.localstack.kafka import Kafka, new_cluster_id, pom_digest
from app.settings import Settings


def _props(path: Path) -> dict[str, str]:
    lines = [l for l in path.read_text().splitlines() if l.strip() and not l.startswith("#")]
    return dict(l.split("=", 1) for l in lines)


def test_server_properties_follow_the_settings(tmp_path: Path) -> None:
    kafka = Kafka(Settings.from_env({"LOCAL_DIR": str(tmp_path), "TOPIC_PARTITIONS": "6"}))
    kafka.dir.mkdir(parents=True)
    kafka.render_config()
    props = _props(kafka.dir / "server.properties")
    assert props["num.partitions"] == "6"
    assert props["process.roles"] == "broker,controller"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:9092"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert props["log.dirs"] == str(tmp_path / "kafka" / "data")
    assert props["offsets.topic.replication.factor"] == "1"
    assert "{" not in (kafka.dir / "server.properties").read_text()
    assert "ConsoleAppender" in (kafka.dir / "log4j.properties").read_text()


def test_cluster_ids_look_like_storage_tool_ones() -> None:
    ids = {new_cluster_id() for _ in range(50)}
    assert len(ids) == 50
    for cid in ids:
        assert len(cid) == 22 and not cid.startswith("-")
        assert len(base64.urlsafe_b64decode(cid + "==")) == 16


def test_broker_command_line_uses_the_copied_jars_and_a_bounded_heap(tmp_path: Path) -> None:
    kafka = Kafka(Settings.from_env({"LOCAL_DIR": str(tmp_path)}))
    argv = kafka.argv()
    assert argv[0] == "java" and "-Xmx512m" in argv
    assert argv[argv.index("-cp") + 1] == f"{tmp_path}/kafka/libs/*"
    assert argv[-2:] == ["kafka.Kafka", str(tmp_path / "kafka" / "server.properties")]
    assert kafka.marker in " ".join(argv)  # how `down` recognises its own pid


def test_jars_count_as_installed_only_for_the_current_pom(tmp_path: Path) -> None:
    kafka = Kafka(Settings.from_env({"LOCAL_DIR": str(tmp_path)}))
    kafka.libs.mkdir(parents=True)
    assert not kafka.installed()
    kafka.stamp.write_text("0" * 64)
    assert not kafka.installed()
    kafka.stamp.write_text(pom_digest() + "\n")
    assert kafka.installed()
