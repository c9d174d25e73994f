"""Locks in Redis held for a whole run: at most one retrain (`lock:retrain`) and one
evaluation of the running experiments (`lock:rollout`) at a time.

Taken by whoever starts a run (the Celery tasks, `cinerec train`,
`cinerec experiment evaluate`, the demo), around the whole run; the pipeline
and the rollout policy themselves never touch them.

Why a short TTL renewed by a watchdog rather than one long TTL: a run can
last minutes or hours. A fixed 6 h lifetime let a longer run lose the lock
to a second run, and kept the lock 6 h after a crash (kill -9, OOM, a lost
machine). Here the key lives `LOCK_TTL_S` and a thread of the holder extends
it every third of that while the process lives: a crashed run frees the lock
within a minute, a long run keeps it as long as it runs.
"""
from __future__ import annotations

import contextlib
import logging
import threading
from typing import Callable, Iterator

from redis.exceptions import LockError, LockNotOwnedError, RedisError
from redis.lock import Lock

from app.settings import Settings
from app.storage import redis_keys as keys
from app.storage.redis_client import connect

log = logging.getLogger(__name__)

LOCK_TTL_S = 60.0


class Watchdog:
    """Calls `beat()` every `interval_s` in a daemon thread until stopped or `beat()` returns False.

    An exception from `beat` is logged and the next beat tries again (a Redis
    blip must not end the renewals).
    """

    def __init__(self, beat: Callable[[], bool], interval_s: float, name: str) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self._beat, self._interval_s = beat, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                if not self._beat():
                    return
            except Exception:
                log.exception("%s: beat failed; retrying in %.1fs", self._thread.name, self._interval_s)

    def __enter__(self) -> Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _renew(lock: Lock, ttl_s: float) -> bool:
    """Reset the lock's TTL; False (stop renewing) once it belongs to somebody else."""
    try:
        lock.extend(ttl_s, replace_ttl=True)
    except LockNotOwnedError:
        log.error("lock %s was lost (expired while unrenewed, e.g. Redis unreachable for %.0fs); another run "
                  "may hold it now", lock.name, ttl_s)
        return False
    except RedisError as exc:  # unreachable for now: the key may still live, try again at the next beat
        log.warning("could not renew lock %s: %s", lock.name, exc)
    return True


@contextlib.contextmanager
def renewed_lock(settings: Settings, name: str, ttl_s: float = LOCK_TTL_S) -> Iterator[bool]:
    """Yield True while holding the Redis lock `name` (renewed every ttl_s / 3), False if another holds it."""
    conn = connect(settings)
    # thread_local=False: the watchdog thread renews with the token this thread acquired.
    lock = conn.lock(name, timeout=ttl_s, blocking=False, thread_local=False)
    try:
        if not lock.acquire():
            yield False
            return
        try:
            with Watchdog(lambda: _renew(lock, ttl_s), ttl_s / 3, name=f"{name}-watchdog"):
                yield True
        finally:
            try:
                lock.release()
            except LockError:  # lost while we ran: another run may own it now, leave that alone
                log.warning("%s was no longer ours when the run ended", name)
    finally:
        conn.close()


def retrain_lock(settings: Settings, ttl_s: float = LOCK_TTL_S) -> contextlib.AbstractContextManager[bool]:
    """`lock:retrain`: at most one retrain run at a time."""
    return renewed_lock(settings, keys.RETRAIN_LOCK, ttl_s)


def rollout_lock(settings: Settings, ttl_s: float = LOCK_TTL_S) -> contextlib.AbstractContextManager[bool]:
    """`lock:rollout`: at most one evaluation of the running experiments at a time."""
    return renewed_lock(settings, keys.ROLLOUT_LOCK, ttl_s)
