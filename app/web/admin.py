"""`POST /v1/admin/retrain`: enqueueing of the Celery retrain (the route needs ADMIN_TOKEN, app/web/auth.py).

The web only *sends* a task by name, so it needs neither the task code nor a
worker: a producer-only Celery app with short broker timeouts and no publish
retries, called in a thread and bounded by `BROKER_TIMEOUT_S`, so a dead
broker gives a quick 503 instead of a hanging request. The retrain task holds
its own Redis lock, so a double POST cannot run two trainings at once.
"""
from __future__ import annotations

import asyncio

from celery import Celery

from app.settings import Settings

RETRAIN_TASK = "workers.tasks.retrain"
RETRAIN_QUEUE = "training"
BROKER_TIMEOUT_S = 2.0


class BrokerUnavailable(RuntimeError):
    """The Celery broker could not take the task in time (503)."""


def producer(settings: Settings) -> Celery:
    """A Celery app used only to publish, failing fast when the broker is down."""
    celery = Celery("cinerec-web", broker=settings.celery_broker_url, set_as_current=False)
    celery.conf.update(
        broker_connection_timeout=BROKER_TIMEOUT_S,
        broker_connection_retry=False,
        broker_connection_retry_on_startup=False,
        broker_connection_max_retries=0,
        broker_transport_options={
            "socket_timeout": BROKER_TIMEOUT_S,
            "socket_connect_timeout": BROKER_TIMEOUT_S,
            "max_retries": 0,
        },
        broker_pool_limit=2,
    )
    return celery


async def enqueue_retrain(celery: Celery, broker_url: str) -> str:
    """Send the retrain task to `broker_url`; its id. Raises BrokerUnavailable when the broker does not take it.

    The URL is passed on purpose: Celery's `conf.broker_url` prefers the
    CELERY_BROKER_URL environment variable to the broker the app was made with.
    """

    def send() -> str:
        with celery.connection_for_write(broker_url) as connection:
            return celery.send_task(RETRAIN_TASK, queue=RETRAIN_QUEUE, retry=False, connection=connection).id

    try:
        return await asyncio.wait_for(asyncio.to_thread(send), BROKER_TIMEOUT_S + 1.0)
    except Exception as exc:  # kombu raises OperationalError/OSError/... depending on the transport
        raise BrokerUnavailable(f"celery broker unavailable: {type(exc).__name__}: {exc}") from None
