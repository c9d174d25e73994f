"""`cinerec services` against the running stack: a second `up` starts nothing."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from app.cli import main
from app.localstack import services
from tests.conftest import BASE, require_service

pytestmark = pytest.mark.integration


def test_up_is_idempotent_and_status_reports_every_service() -> None:
    for name in ("kafka", "clickhouse", "redis"):
        require_service(name)
    before = {s.name: s.pid() for s in services(BASE)}

    result = CliRunner().invoke(main, ["services", "up"])
    assert result.exit_code == 0, result.output
    assert {s.name: s.pid() for s in services(BASE)} == before  # nothing started or restarted
    service_lines = [line for line in result.output.splitlines() if line.split()[0] in before]
    assert len(service_lines) == 3
    for line in service_lines:
        assert "already running" in line or "external" in line, line
    assert f"topic {BASE.topic_interactions}: exists" in result.output

    status = CliRunner().invoke(main, ["services", "status"])
    assert status.exit_code == 0, status.output
    rows = {line.split()[0]: line.split()[1:3] for line in status.output.splitlines()}
    assert rows == {s.name: [rows[s.name][0], s.address] for s in services(BASE)}
    assert {state for state, _ in rows.values()} <= {"up", "external"}


def test_unknown_service_names_are_rejected() -> None:
    result = CliRunner().invoke(main, ["services", "up", "zookeeper"])
    assert result.exit_code == 2
    assert "zookeeper" in result.output
