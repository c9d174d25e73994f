"""Thin Celery shells: `retrain` around `app.recsys.training.pipeline.retrain`, and
`evaluate_experiments` around `app.experiments.rollout.evaluate`.

Safe under at-least-once delivery: runs never overlap (`lock:retrain`,
`lock:rollout`); a re-delivered retrain whose run already finished (acks_late
+ a lost ack) is recognised by its task id and skipped; an evaluation is
idempotent by construction (it acts on the stored state, and an ending logged
but not applied is completed, not decided again). Connection errors to
ClickHouse or Redis are retried with exponential backoff; anything else fails
the run, which is recorded in `model_runs` (retrain) or logged (evaluation).
"""
from __future__ import annotations

import logging

from clickhouse_driver.errors import NetworkError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.experiments import rollout
from app.recsys.progress import LogProgress
from app.recsys.training import pipeline
from app.settings import get_settings
from app.storage.clickhouse import client
from app.storage.locks import retrain_lock, rollout_lock
from app.storage.redis_client import connect
from workers.celery_app import app

log = logging.getLogger(__name__)

TRANSIENT = (NetworkError, RedisConnectionError, RedisTimeoutError, ConnectionError, EOFError)
DONE_TTL_S = 7 * 24 * 3600


def done_key(task_id: str) -> str:
    """Marker of a finished run of one task id (outside the serving key layout: trainer-only)."""
    return f"retrain:done:{task_id}"


@app.task(
    bind=True,
    name="workers.tasks.retrain",
    autoretry_for=TRANSIENT,
    retry_backoff=30,
    retry_backoff_max=1800,
    retry_jitter=True,
    max_retries=5,
)
def retrain(self, force: bool = False) -> str:
    """Retrain, gate and publish; returns a one-line outcome (also in the worker log)."""
    settings = get_settings()
    task_id = self.request.id or "eager"
    with retrain_lock(settings) as acquired:
        if not acquired:
            log.warning("retrain %s skipped: another run holds the lock", task_id)
            return "skipped: locked"
        conn = connect(settings)
        try:
            if conn.exists(done_key(task_id)):
                log.info("retrain %s already ran (re-delivered task), skipping", task_id)
                return "skipped: already done"
            report = pipeline.retrain(settings, pipeline.RetrainConfig(force=force), progress=LogProgress(log))
            conn.set(done_key(task_id), report.version, ex=DONE_TTL_S)
        finally:
            conn.close()
    outcome = f"{report.status}: {report.version} ({report.reason})"
    log.info("retrain %s %s; timings %s", task_id, outcome, report.timings)
    return outcome


@app.task(
    bind=True,
    name="workers.tasks.evaluate_experiments",
    autoretry_for=TRANSIENT,
    retry_backoff=10,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=5,
)
def evaluate_experiments(self) -> str:
    """Apply the rollout policy to every running experiment; returns one line per experiment."""
    settings = get_settings()
    with rollout_lock(settings) as acquired:
        if not acquired:
            log.warning("experiment evaluation %s skipped: another one holds the lock", self.request.id)
            return "skipped: locked"
        ch, r = client(settings), connect(settings)
        try:
            outcomes = rollout.evaluate(ch, r)
        finally:
            ch.disconnect()
            r.close()
    summary = "; ".join(map(str, outcomes)) or "no experiment is running"
    log.info("experiment evaluation %s: %s", self.request.id, summary)
    return summary
