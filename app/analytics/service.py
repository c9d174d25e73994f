"""Business reports kept apart from serving: their own threads, a concurrency
limit, a deadline enforced in ClickHouse, and a short cache.

Why: a report is seconds of ClickHouse work through a synchronous driver. Run
in the loop's default executor, eight concurrent dashboards took the threads
that the `/ready` ClickHouse probe and the model cache also need, so `/ready`
timed out (503); and a report whose request had given up kept its query running.
Here:
- reports run in a pool of ANALYTICS_WORKERS threads of their own; a request
  waits at most ANALYTICS_QUEUE_S for a free one, then gets `Busy` (a 429 with
  Retry-After);
- a report has ANALYTICS_TIMEOUT_S: every query carries the time left as
  ClickHouse's `max_execution_time` (`api.Bounded`), and a thread's slot is
  given back only when the thread is really done, so the limit is the true load;
- a result is reused for ANALYTICS_CACHE_S per (report, range), and concurrent
  requests for the same (report, range) share one run.
"""
from __future__ import annotations

import asyncio
import functools
import math
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

from app.analytics import api
from app.analytics.api import DateRange, Queries, ReportTimeout
from app.settings import Settings

Report = Callable[[Queries, DateRange], Any]
# Seconds past the deadline before the waiting request gives up on a thread that
# did not come back (ClickHouse normally stops the query at the deadline itself).
GRACE_S = 2.0
# Distinct (report, range) results kept at most; the oldest go first.
CACHE_ENTRIES = 256


class Busy(RuntimeError):
    """Every analytics thread stayed busy for ANALYTICS_QUEUE_S (429)."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"analytics is busy: every worker is taken; retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


@dataclass
class _Entry:
    task: asyncio.Future
    expires: float = math.inf  # monotonic; a run in flight never expires


class Analytics:
    """Runs reports for the web views (one per process, opened and closed in app/web/server.py)."""

    def __init__(self, settings: Settings, run: Callable[..., Any] = api.run) -> None:
        self._settings = settings
        self._run_report = run
        self._executor = ThreadPoolExecutor(settings.analytics_workers, thread_name_prefix="cinerec-analytics")
        self._slots = asyncio.Semaphore(settings.analytics_workers)
        self._results: OrderedDict[tuple[str, DateRange], _Entry] = OrderedDict()

    async def report(self, report: Report, period: DateRange) -> Any:
        """The result of `report` over `period`: cached, shared with concurrent asks, or run now.

        Raises `Busy`, `ReportTimeout`, or what the report raised (ClickHouse errors).
        """
        key = (report.__name__, period)
        entry = self._results.get(key)
        if entry is None or entry.expires <= time.monotonic():
            entry = _Entry(asyncio.ensure_future(self._run(report, period)))
            self._results[key] = entry
            self._results.move_to_end(key)
            while len(self._results) > CACHE_ENTRIES:
                self._results.popitem(last=False)
            entry.task.add_done_callback(functools.partial(self._settle, key, entry))
        # shield: one client hanging up must not cancel the run the others wait for
        return await asyncio.shield(entry.task)

    def _settle(self, key: tuple[str, DateRange], entry: _Entry, task: asyncio.Future) -> None:
        """Keep a result for ANALYTICS_CACHE_S; forget a failure at once (the next ask retries)."""
        if not task.cancelled() and task.exception() is None:
            entry.expires = time.monotonic() + self._settings.analytics_cache_s
        elif self._results.get(key) is entry:
            del self._results[key]

    async def _run(self, report: Report, period: DateRange) -> Any:
        settings = self._settings
        try:
            await asyncio.wait_for(self._slots.acquire(), settings.analytics_queue_s)
        except asyncio.TimeoutError:
            raise Busy(max(1, math.ceil(settings.analytics_queue_s))) from None
        cancelled = threading.Event()
        work = asyncio.get_running_loop().run_in_executor(
            self._executor, self._run_report, settings, report, period, settings.analytics_timeout_s, cancelled
        )
        work.add_done_callback(lambda _: self._slots.release())  # when the thread is done, not before
        try:
            return await asyncio.wait_for(asyncio.shield(work), settings.analytics_timeout_s + GRACE_S)
        except asyncio.TimeoutError:
            cancelled.set()  # the thread starts no further query
            raise ReportTimeout(f"no answer within {settings.analytics_timeout_s:g} s") from None

    def close(self) -> None:
        """Drop queued reports; running ones end at their deadline (ClickHouse stops them)."""
        self._executor.shutdown(wait=False, cancel_futures=True)
