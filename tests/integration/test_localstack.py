"""Services configured to live elsewhere (Settings.external): `up` starts nothing,
only checks that they answer; `down` leaves them alone."""
from __future__ import annotations

from pathlib import Path

import pytest

from app.localstack import ServiceError, State
from app.localstack.redis import Redis
from app.settings import Settings
from tests.app.localstack.test_service import free_port
from tests.conftest import require_service

pytestmark = pytest.mark.integration


def test_an_external_server_that_answers_is_used_not_started(tmp_path: Path) -> None:
    require_service("redis")
    settings = Settings.from_env({"LOCAL_DIR": str(tmp_path), "REDIS_URL": "redis://127.0.0.1:6379/5"})
    assert settings.external == frozenset({"redis"})
    service = Redis(settings)
    status = service.up()
    assert status.state is State.EXTERNAL and "not started" in status.detail
    assert service.down().state is State.EXTERNAL
    assert service.answers()  # still running: down did not touch it
    assert not service.dir.exists()  # nothing installed, configured or launched


def test_an_external_server_that_does_not_answer_is_an_error(tmp_path: Path) -> None:
    port = free_port()
    service = Redis(Settings.from_env({"LOCAL_DIR": str(tmp_path), "REDIS_URL": f"redis://127.0.0.1:{port}/0"}))
    with pytest.raises(ServiceError, match=f"redis: 127.0.0.1:{port} is configured in the environment but does not answer"):
        service.up()
    assert service.status().state is State.DOWN
    assert not service.dir.exists()
