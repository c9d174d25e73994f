"""The retrain lock in Redis: at most one retrain run at a time.

Taken by whoever starts a run (the Celery task, `cinerec train`, the demo),
around the whole run; the pipeline itself never touches it.
"""
from __future__ import annotations

import contextlib
import logging
from typing import Iterator

from redis.exceptions import LockError

from app.settings import Settings
from app.storage import redis_keys as keys
from app.storage.redis_client import connect

log = logging.getLogger(__name__)

RETRAIN_LOCK_TIMEOUT_S = 6 * 3600  # above the longest retrain; Celery's visibility timeout matches


@contextlib.contextmanager
def retrain_lock(settings: Settings, timeout_s: float = RETRAIN_LOCK_TIMEOUT_S) -> Iterator[bool]:
    """Yield True while holding `lock:retrain`, False if another run holds it (no overlapping runs)."""
    conn = connect(settings)
    lock = conn.lock(keys.RETRAIN_LOCK, timeout=timeout_s, blocking=False)
    acquired = lock.acquire()
    try:
        yield acquired
    finally:
        if acquired:
            try:
                lock.release()
            except LockError:  # held past its timeout: another run may own it now, leave that alone
                log.warning("lock:retrain expired before the run ended (timeout %ss)", timeout_s)
        conn.close()
