"""The Celery retrain task body, run with `task.apply()` against real ClickHouse and Redis."""
from __future__ import annotations

import logging

import pytest
from clickhouse_driver.errors import NetworkError

from app.recsys.training import pipeline, publish
from app.settings import Settings, get_settings
from app.storage import redis_keys as keys
from app.storage import model_runs
from app.storage.locks import retrain_lock
from app.storage.redis_client import connect
from workers.tasks import done_key, retrain

pytestmark = pytest.mark.redis_db(10)


@pytest.fixture
def settings(seeded_process_settings: Settings) -> Settings:
    return seeded_process_settings


def test_task_retrains_and_publishes(settings: Settings) -> None:
    result = retrain.apply()
    conn = connect(settings)
    try:
        current = publish.current_version(conn)
        assert result.successful(), result.traceback
        assert result.get().startswith(f"published: {current} ")
        assert conn.get(done_key(result.id)) == current.encode()
    finally:
        conn.close()


def test_a_redelivered_task_does_not_run_twice(settings: Settings) -> None:
    first = retrain.apply(task_id="retrain-once")
    again = retrain.apply(task_id="retrain-once")
    assert first.get().startswith("published")
    assert again.get() == "skipped: already done"
    assert len(model_runs.recent(settings)) == 1


def test_task_is_skipped_while_another_run_holds_the_lock(settings: Settings) -> None:
    with retrain_lock(settings) as held:
        assert held
        result = retrain.apply()
    assert result.get() == "skipped: locked"
    conn = connect(settings)
    try:
        assert publish.current_version(conn) is None
    finally:
        conn.close()


def test_connection_errors_are_retried_with_backoff_then_fail(
    redis_settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CLICKHOUSE_URL", "clickhouse://default@127.0.0.1:1/nothing_listens_here")
    monkeypatch.setenv("REDIS_URL", redis_settings.redis_url)
    get_settings.cache_clear()
    try:
        with caplog.at_level(logging.INFO, logger="celery.app.trace"):
            result = retrain.apply()
    finally:
        get_settings.cache_clear()
    assert result.failed() and isinstance(result.result, NetworkError)
    retries = [r.getMessage() for r in caplog.records if "Retry in" in r.getMessage()]
    assert len(retries) == retrain.max_retries
    conn = connect(redis_settings)
    try:
        assert publish.current_version(conn) is None
        assert not conn.exists(keys.RETRAIN_LOCK), "every attempt releases the lock"
    finally:
        conn.close()
