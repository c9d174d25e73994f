"""Celery configuration, all in one module (loaded with `config_from_object`).

The Redis broker re-delivers a task that is not acked within
`visibility_timeout`; with `acks_late` it must exceed the longest retrain, or a
second worker would start the task while the first still runs (the retrain
lock would then skip it, and the task would be acked without a run of its own).
"""
from __future__ import annotations

from datetime import timedelta

from kombu import Queue

from app.settings import get_settings

_settings = get_settings()

LONGEST_RETRAIN_S = 6 * 3600

broker_url = _settings.celery_broker_url
broker_transport_options = {"visibility_timeout": LONGEST_RETRAIN_S + 3600}
broker_connection_timeout = _settings.network_timeout_s
broker_connection_retry_on_startup = True
result_backend = None  # the outcome is recorded in ClickHouse model_runs
task_ignore_result = True

# Evaluations get their own queue (and worker, Procfile `rollout`): they never wait behind a retrain.
task_queues = (Queue("training"), Queue("experiments"))
task_routes = {"workers.tasks.retrain": {"queue": "training"},
               "workers.tasks.evaluate_experiments": {"queue": "experiments"}}
task_acks_late = True  # a trainer that dies mid-run leaves the task for the next worker
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
task_serializer = "json"
accept_content = ["json"]
timezone = "UTC"

beat_schedule = {
    "retrain": {
        "task": "workers.tasks.retrain",
        "schedule": timedelta(hours=_settings.retrain_interval_hours),
        "options": {"queue": "training", "expires": _settings.retrain_interval_hours * 3600},
    },
    # The rollout policy (app.experiments.rollout); an evaluation not started within one
    # interval is dropped: the next one reads fresher data anyway.
    "evaluate-experiments": {
        "task": "workers.tasks.evaluate_experiments",
        "schedule": timedelta(minutes=_settings.experiment_eval_minutes),
        "options": {"queue": "experiments", "expires": _settings.experiment_eval_minutes * 60},
    },
}
