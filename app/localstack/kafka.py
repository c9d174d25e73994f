"""Apache Kafka 3.9 in KRaft mode (no ZooKeeper), jars fetched from Maven Central.

Maven is the one registry that carries the broker, so `ops/kafka/pom.xml`
lists it and `copy-dependencies` puts every runtime jar into one folder; a hash
of the pom next to the jars tells whether they are current.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import shutil
import uuid

from app.localstack import proc
from app.localstack.service import OPS_DIR, LocalService, render
from app.storage.kafka_admin import cluster_answers

log = logging.getLogger(__name__)

POM = OPS_DIR / "kafka" / "pom.xml"
COPY_DEPENDENCIES = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies"


def new_cluster_id() -> str:
    """A KRaft cluster id as `StorageTool random-uuid` makes it (base64url, 22 chars, no leading '-')."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


def pom_digest() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()


class Kafka(LocalService):
    name = "kafka"
    url_setting = "kafka_broker"
    default_port = 9092
    marker = "kafka.Kafka"
    start_timeout_s = 120.0  # JVM start + KRaft election on a busy 2-core box
    stop_timeout_s = 30.0

    @property
    def libs(self):
        return self.dir / "libs"

    @property
    def stamp(self):
        return self.libs / ".pom-sha256"

    @property
    def controller_port(self) -> int:
        return self.port + 1

    def extra_listeners(self) -> list[str]:
        return [f"controller {self.host}:{self.controller_port}"]

    def installed(self) -> bool:
        return bool(shutil.which("java")) and self.stamp.is_file() and self.stamp.read_text().strip() == pom_digest()

    def install(self) -> None:
        if shutil.which("java") is None:
            proc.apt_install(["default-jre-headless"])
        if shutil.which("mvn") is None:
            proc.apt_install(["maven"])
        staging = self.dir / "libs.partial"
        shutil.rmtree(staging, ignore_errors=True)
        log.info("kafka: fetching broker jars from Maven Central (first run only, about a minute)")
        proc.run(
            ["mvn", "-q", "-B", "-f", str(POM), COPY_DEPENDENCIES, "-DincludeScope=runtime",
             f"-DoutputDirectory={staging}"],
            "downloading Kafka jars with Maven", timeout=900,
        )
        (staging / ".pom-sha256").write_text(pom_digest() + "\n")
        shutil.rmtree(self.libs, ignore_errors=True)
        staging.rename(self.libs)

    def render_config(self) -> None:
        render(
            "kafka/server.properties", self.dir / "server.properties",
            host=self.host, port=self.port, controller_port=self.controller_port,
            data_dir=self.dir / "data", partitions=self.settings.topic_partitions,
        )
        render("kafka/log4j.properties", self.dir / "log4j.properties")

    def java(self, *args: str, heap: str | None = None) -> list[str]:
        head = ["java"] + ([f"-Xmx{heap}"] if heap else [])
        return [
            *head, "-cp", f"{self.libs}/*", f"-Dlog4j.configuration=file:{self.dir / 'log4j.properties'}",
            f"-Dkafka.logs.dir={self.dir / 'logs'}", *args,
        ]

    def prepare(self) -> None:
        self.render_config()
        if (self.dir / "data" / "meta.properties").is_file():
            return
        log.info("kafka: formatting KRaft storage in %s", self.dir / "data")
        proc.run(
            self.java("kafka.tools.StorageTool", "format", "-g", "-t", new_cluster_id(),
                      "-c", str(self.dir / "server.properties")),
            "formatting Kafka storage", timeout=120,
        )

    def argv(self) -> list[str]:
        return self.java("kafka.Kafka", str(self.dir / "server.properties"), heap="512m")

    def speaks(self, timeout: float) -> bool:
        return asyncio.run(cluster_answers(self.settings, timeout))
