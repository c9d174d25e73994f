"""The beat schedule and Celery settings the retrain relies on (workers/config.py)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from celery.schedules import schedule

from app.settings import Settings
from workers.celery_app import app
from workers.config import LONGEST_RETRAIN_S


def test_retrain_is_scheduled_every_48_hours_by_default() -> None:
    assert Settings.from_env({}).retrain_interval_hours == 48
    entry = app.conf.beat_schedule["retrain"]
    assert entry["task"] == "workers.tasks.retrain"
    every = schedule(entry["schedule"], app=app)
    now = datetime.now(timezone.utc)
    every.nowfun = lambda: now

    due, wait_s = every.is_due(now - timedelta(hours=47))
    assert not due and wait_s == timedelta(hours=1).total_seconds()
    due, next_s = every.is_due(now - timedelta(hours=48, seconds=1))
    assert due and next_s == timedelta(hours=48).total_seconds()


def test_retrain_runs_on_the_training_queue_and_survives_a_dying_worker() -> None:
    conf = app.conf
    assert conf.task_routes["workers.tasks.retrain"] == {"queue": "training"}
    assert conf.task_acks_late and conf.worker_prefetch_multiplier == 1
    # A task not acked within visibility_timeout is re-delivered: it must outlast the longest run.
    assert conf.broker_transport_options["visibility_timeout"] > LONGEST_RETRAIN_S


def test_the_app_module_alone_registers_the_retrain_task() -> None:
    """`celery -A workers.celery_app worker` imports only the app module."""
    assert "workers.tasks.retrain" in app.tasks


def test_experiments_are_evaluated_every_hour_on_their_own_queue() -> None:
    assert Settings.from_env({}).experiment_eval_minutes == 60
    entry = app.conf.beat_schedule["evaluate-experiments"]
    assert entry["task"] == "workers.tasks.evaluate_experiments"
    assert entry["schedule"] == timedelta(minutes=60) and entry["options"]["expires"] == 3600
    assert app.conf.task_routes["workers.tasks.evaluate_experiments"] == {"queue": "experiments"}
    assert "workers.tasks.evaluate_experiments" in app.tasks
