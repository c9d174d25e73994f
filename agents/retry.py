"""Retry-until-done with capped exponential backoff, for the loader's side effects.

The loader commits a batch's offsets only after its DLQ send, ClickHouse
insert and stats sends succeeded; giving up on one would mean either
committing events that were not delivered (lost) or dropping the batch.
So each is retried until it succeeds, with capped backoff and a log line per failure.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable, TypeVar

T = TypeVar("T")

MIN_DELAY_S = 0.2
MAX_DELAY_S = 10.0


def backoff_delays(first: float = MIN_DELAY_S, cap: float = MAX_DELAY_S):
    """Infinite delays: first, 2*first, ... capped at `cap`."""
    delay = first
    while True:
        yield delay
        delay = min(delay * 2, cap)


async def retry_forever(
    attempt: Callable[[], Awaitable[T]],
    what: str,
    log: logging.Logger,
    on_retry: Callable[[], None] = lambda: None,
    first: float = MIN_DELAY_S,
    cap: float = MAX_DELAY_S,
) -> T:
    """Await `attempt()` until it returns; log each failure and sleep with backoff."""
    delays = backoff_delays(first, cap)
    failures = 0
    while True:
        try:
            result = await attempt()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any driver/broker error: the data must still get through
            failures += 1
            delay = next(delays)
            on_retry()
            log.warning("%s failed (attempt %d): %s; retrying in %.1fs", what, failures, exc, delay)
            await asyncio.sleep(delay)
            continue
        if failures:
            log.info("%s succeeded after %d failed attempts", what, failures)
        return result
