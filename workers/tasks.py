"""The `retrain` task: a thin Celery shell around `app.recsys.training.pipeline.retrain`.

Safe under at-least-once delivery: runs never overlap (`lock:retrain`), and a
re-delivered task whose run already finished (acks_late + a lost ack) is
recognised by its task id and skipped. Connection errors to ClickHouse or
Redis are retried with exponential backoff; anything else fails the run,
which is recorded in `model_runs`.
"""
from __future__ import annotations

import logging

from clickhouse_driver.errors import NetworkError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.recsys.progress import LogProgress
from app.recsys.training import pipeline
from app.settings import get_settings
from app.storage.locks import retrain_lock
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
