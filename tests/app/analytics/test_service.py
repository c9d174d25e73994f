"""The analytics pool (app/analytics/service.py): limit, 429, deadline, shared runs and the cache.

The report runner is a stand-in that blocks on a threading.Event, so each test
controls exactly when a "query" finishes; the real runner (ClickHouse with
max_execution_time) is covered by tests/app/analytics/test_api.py and the
integration tests. Waits are on state (a thread started, a future done).
"""
from __future__ import annotations

import asyncio
import threading
from typing import Any, Iterator

import pytest

from app.analytics import service
from app.analytics.api import DateRange, ReportTimeout
from app.analytics.service import Analytics, Busy
from app.settings import Settings

MARCH = DateRange.parse("2026-03-01", "2026-03-31")
APRIL = DateRange.parse("2026-04-01", "2026-04-30")
WAIT_S = 30.0


def summary(conn: Any, period: DateRange) -> dict:
    raise AssertionError("never called: the stand-in runner answers")


class Runner:
    """Stand-in for `api.run`: records calls, blocks until released, then answers or raises."""

    def __init__(self) -> None:
        self.calls: list[DateRange] = []
        self.started = threading.Semaphore(0)
        self.release = threading.Event()
        self.fail: Exception | None = None
        self.cancelled: list[threading.Event] = []

    def __call__(self, settings: Settings, report: Any, period: DateRange, timeout_s: float,
                 cancelled: threading.Event) -> dict:
        self.calls.append(period)
        self.cancelled.append(cancelled)
        self.started.release()
        assert self.release.wait(WAIT_S), "the test never released the report"
        if self.fail is not None:
            raise self.fail
        return {"from": period.first.isoformat(), "run": len(self.calls)}

    async def wait_started(self) -> None:
        assert await asyncio.to_thread(self.started.acquire, timeout=WAIT_S), "the report never started"


@pytest.fixture
def runner() -> Iterator[Runner]:
    runner = Runner()
    yield runner
    runner.release.set()  # never leave a pool thread blocked


def analytics(runner: Runner, **overrides: Any) -> Analytics:
    settings = Settings.from_env({}).with_overrides(
        analytics_workers=1, analytics_queue_s=0.2, analytics_timeout_s=30.0, analytics_cache_s=60.0
    ).with_overrides(**overrides)
    return Analytics(settings, run=runner)


async def test_a_full_pool_answers_busy_with_a_retry_after(runner: Runner) -> None:
    pool = analytics(runner)
    first = asyncio.ensure_future(pool.report(summary, MARCH))
    await runner.wait_started()
    with pytest.raises(Busy) as busy:
        await pool.report(summary, APRIL)  # a different range: not shared, needs its own thread
    assert busy.value.retry_after_s == 1
    runner.release.set()
    assert (await first)["from"] == "2026-03-01"
    assert runner.calls == [MARCH]
    assert (await pool.report(summary, APRIL))["from"] == "2026-04-01"  # the busy answer is not cached
    pool.close()


async def test_concurrent_asks_for_the_same_range_share_one_run_and_the_result_is_cached(runner: Runner) -> None:
    pool = analytics(runner)
    asks = [asyncio.ensure_future(pool.report(summary, MARCH)) for _ in range(5)]
    await runner.wait_started()
    runner.release.set()
    results = await asyncio.gather(*asks)
    assert results == [results[0]] * 5 and runner.calls == [MARCH]
    assert await pool.report(summary, MARCH) == results[0]
    assert runner.calls == [MARCH]
    pool.close()


async def test_a_cached_result_expires(runner: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(service.time, "monotonic", lambda: clock[0])
    pool = analytics(runner, analytics_cache_s=60.0)
    runner.release.set()
    await pool.report(summary, MARCH)
    clock[0] += 59.0
    await pool.report(summary, MARCH)
    assert len(runner.calls) == 1
    clock[0] += 2.0
    assert (await pool.report(summary, MARCH))["run"] == 2
    pool.close()


async def test_a_failure_is_not_cached(runner: Runner) -> None:
    pool = analytics(runner)
    runner.fail = OSError("connection refused")
    runner.release.set()
    with pytest.raises(OSError):
        await pool.report(summary, MARCH)
    runner.fail = None
    assert (await pool.report(summary, MARCH))["run"] == 2
    pool.close()


async def test_a_report_past_its_deadline_is_cancelled_and_keeps_its_slot_until_its_thread_ends(
    runner: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "GRACE_S", 0.0)
    pool = analytics(runner, analytics_timeout_s=0.2)
    with pytest.raises(ReportTimeout):
        await pool.report(summary, MARCH)
    assert runner.cancelled[0].is_set()  # the thread is told to start no further query
    with pytest.raises(Busy):  # its thread is still inside the "query": the slot is not free yet
        await pool.report(summary, APRIL)
    runner.release.set()
    pool_free = pool.report(summary, APRIL)
    assert (await pool_free)["from"] == "2026-04-01"
    pool.close()


async def test_a_client_hanging_up_does_not_cancel_the_shared_run(runner: Runner) -> None:
    pool = analytics(runner)
    impatient = asyncio.ensure_future(pool.report(summary, MARCH))
    patient = asyncio.ensure_future(pool.report(summary, MARCH))
    await runner.wait_started()
    impatient.cancel()
    runner.release.set()
    assert (await patient)["run"] == 1
    pool.close()
