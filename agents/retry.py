"""Retry-until-done with capped exponential backoff, for the loader's side effects.

The loader commits a batch's offsets only after its DLQ send, ClickHouse
insert and stats sends succeeded; giving up on one would mean either
committing events that were not delivered (lost) or dropping the batch.
So each is retried until it succeeds, with capped backoff and a log line per
failure, EXCEPT errors that can never succeed (a message over the broker's
size limit, a table that does not exist): retrying those forever would stall
ingestion silently. The caller says which they are (`permanent`); they are
raised at once, and the caller dead-letters the records or stops
(docs/ingestion.md, "Errors that retrying cannot fix").
"""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable, TypeVar

from aiokafka.errors import (
    ClusterAuthorizationFailedError, InvalidTopicError, MessageSizeTooLargeError, RecordListTooLargeError,
    RecordTooLargeError, TopicAuthorizationFailedError,
)

T = TypeVar("T")

MIN_DELAY_S = 0.2
MAX_DELAY_S = 10.0

# Kafka errors that a retry of the same send cannot fix.
KAFKA_PERMANENT = (MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError, InvalidTopicError,
                   TopicAuthorizationFailedError, ClusterAuthorizationFailedError)


class Fatal(RuntimeError):
    """Ingestion cannot go on until an operator acts: the loader logs this once and stops the worker."""


def kafka_permanent(exc: BaseException) -> bool:
    """True for broker answers that repeating the same send cannot change."""
    return isinstance(exc, KAFKA_PERMANENT)


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
    permanent: Callable[[Exception], bool] = lambda exc: False,
) -> T:
    """Await `attempt()` until it returns; log each failure and sleep with backoff.

    An exception for which `permanent(exc)` is true is raised at once, unretried.
    """
    delays = backoff_delays(first, cap)
    failures = 0
    while True:
        try:
            result = await attempt()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any driver/broker error: the data must still get through
            if permanent(exc):
                raise
            failures += 1
            delay = next(delays)
            on_retry()
            log.warning("%s failed (attempt %d): %s; retrying in %.1fs", what, failures, exc, delay)
            await asyncio.sleep(delay)
            continue
        if failures:
            log.info("%s succeeded after %d failed attempts", what, failures)
        return result
