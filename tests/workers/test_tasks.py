"""The Celery task bodies (retrain, experiment evaluation), run with `task.apply()` against real
ClickHouse and Redis."""
from __future__ import annotations

import logging
from datetime import datetime, timezone

import pytest
from clickhouse_driver.errors import NetworkError

from app.experiments import operations, store
from app.experiments.model import State
from app.recsys.training import pipeline, publish
from app.settings import Settings, get_settings
from app.storage import redis_keys as keys
from app.storage import model_runs
from app.storage.clickhouse import client
from app.storage.locks import retrain_lock, rollout_lock
from app.storage.redis_client import connect
from workers.tasks import done_key, evaluate_experiments, retrain

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


def test_evaluation_task_applies_the_policy_and_skips_while_locked(seeded_process_settings: Settings) -> None:
    """One running experiment past its maximum duration with no traffic: the task keeps the control."""
    settings = seeded_process_settings
    conn, ch = connect(settings), client(settings)
    try:
        for version in ("v1", "v2"):
            conn.zadd(keys.VERSIONS, {version: 1.0})
            conn.set(keys.meta(version), "{}")
        conn.set(keys.CURRENT, "v1")
        plan = operations.new_plan("v2", "v1", datetime(2026, 1, 1, tzinfo=timezone.utc), "exp-task", max_days=1.0)
        operations.start(ch, conn, plan, min_users=10)
        with rollout_lock(settings) as held:
            assert held
            assert evaluate_experiments.apply().get() == "skipped: locked"
        assert store.get(ch, "exp-task").state is State.RUNNING
        result = evaluate_experiments.apply()
        assert result.get().startswith("exp-task: keep_control (maximum duration reached")
        assert store.get(ch, "exp-task").state is State.FINISHED and publish.current_version(conn) == "v1"
        assert evaluate_experiments.apply().get() == "no experiment is running"  # a re-delivery: nothing to do
    finally:
        conn.close()
        ch.disconnect()
