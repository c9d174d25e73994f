"""Ingestion under faults: ClickHouse down while events flow, worker killed with SIGKILL.

Either way every event must end up visible exactly once (by event_id, FINAL).
The ClickHouse outage uses a throwaway server of its own on free ports, so the
shared one (and the other tests) are not disturbed.
"""
from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from app.localstack import proc
from app.localstack.clickhouse import ClickHouse
from app.producer import produce_messages
from app.storage.clickhouse import migrate
from app.storage.interactions import count_visible
from app.worker_process import WorkerProcess, free_port
from tests.integration.ingest_support import (
    make_events, messages_of, produce, stored_event_ids, wait_for_count,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.redis_db(9)]


@pytest.fixture
def throwaway_clickhouse(kafka_settings, tmp_path: Path):
    """A ClickHouse server of this test only (own dir, TCP and HTTP ports), stopped at the end."""
    port = free_port()
    settings = kafka_settings.with_overrides(
        local_dir=tmp_path / "local", clickhouse_url=f"clickhouse://default@127.0.0.1:{port}/cinerec_fault",
    )
    server = ClickHouse(settings)
    server.http_port = free_port()
    server.up()
    migrate(settings)
    yield server
    server.down()


def _settings(base, **changes):
    return base.with_overrides(loader_batch_max=50, loader_batch_within_s=0.2, stats_enabled=False, **changes)


def _log_has(path: Path, text: str) -> bool:
    return text in path.read_text(errors="replace")


def _loader_check(worker: WorkerProcess) -> dict:
    """The `loader` entry of the worker's /ready (503 while a backend is down: the body still says why)."""
    try:
        with urllib.request.urlopen(f"{worker.settings.web_url}/ready", timeout=5) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        body = json.loads(exc.read())
    return body["checks"]["loader"]


async def test_clickhouse_outage_loses_and_duplicates_nothing(throwaway_clickhouse, tmp_path: Path) -> None:
    """... and /ready says the loader is stuck while it waits (LOADER_STALL_S), then that it moves again."""
    settings = _settings(throwaway_clickhouse.settings, loader_stall_s=2.0)
    events = make_events(1200, seed=11)
    first, second = events[:600], events[600:]
    log = tmp_path / "worker.log"
    with WorkerProcess(settings, log) as worker:
        await produce(settings, messages_of(first))
        assert wait_for_count(settings, 100, timeout=60, alive=worker.alive) >= 100
        throwaway_clickhouse.down()
        await produce(settings, messages_of(second))
        # the loader keeps the batch and retries with backoff while ClickHouse is away
        assert proc.wait_for(lambda: _log_has(log, "ClickHouse insert of"), 60, alive=worker.alive), \
            "the loader never reported a failed insert while ClickHouse was down"
        assert proc.wait_for(lambda: not _loader_check(worker)["ok"], 60, alive=worker.alive), \
            f"/ready never reported the stalled loader: {_loader_check(worker)}"
        stalled = _loader_check(worker)
        throwaway_clickhouse.up()
        seen = wait_for_count(settings, len(events), timeout=120, alive=worker.alive)
        assert proc.wait_for(lambda: _loader_check(worker)["ok"], 60, alive=worker.alive), \
            f"/ready still reports a stalled loader after the outage: {_loader_check(worker)}"
    assert seen == len(events)
    assert "no progress for" in stalled["detail"] and "LOADER_STALL_S=2" in stalled["detail"]
    assert sorted(stored_event_ids(settings)) == sorted(e.event_id for e in events)


async def test_worker_killed_mid_stream_redelivers_without_visible_duplicates(
    clickhouse_settings, kafka_settings, tmp_path: Path
) -> None:
    settings = _settings(kafka_settings, clickhouse_url=clickhouse_settings.clickhouse_url)
    events = make_events(3000, seed=12)
    first = WorkerProcess(settings, tmp_path / "worker1.log").start()
    # Paced: the site keeps sending while the worker dies, so the kill lands mid-stream
    # however fast the loader is.
    producing = asyncio.create_task(
        produce_messages(settings, messages_of(events), total=len(events), rate=1_000, progress=False))
    try:
        loaded = await asyncio.to_thread(wait_for_count, settings, 300, 60, first.alive)
        assert loaded >= 300
    finally:
        first.kill()  # no graceful shutdown: uncommitted offsets are re-delivered
    assert count_visible(settings) < len(events), "the worker finished before it was killed; nothing tested"
    await producing
    with WorkerProcess(settings, tmp_path / "worker2.log") as second:
        # the dead member leaves the group only after its session times out
        seen = wait_for_count(settings, len(events), timeout=240, alive=second.alive)
    assert seen == len(events)
    assert sorted(stored_event_ids(settings)) == sorted(e.event_id for e in events)


async def test_worker_stopped_during_an_outage_leaves_the_batch_for_the_next(
    throwaway_clickhouse, tmp_path: Path
) -> None:
    """SIGTERM while the loader retries: the unstored batch must not be committed."""
    settings = _settings(throwaway_clickhouse.settings)
    events = make_events(300, seed=13)
    log = tmp_path / "worker1.log"
    throwaway_clickhouse.down()
    with WorkerProcess(settings, log) as worker:
        await produce(settings, messages_of(events))
        assert proc.wait_for(lambda: _log_has(log, "ClickHouse insert of"), 60, alive=worker.alive), \
            "the loader never reported a failed insert while ClickHouse was down"
    # graceful stop done (the context manager sends SIGTERM); now ClickHouse comes back
    throwaway_clickhouse.up()
    with WorkerProcess(settings, tmp_path / "worker2.log") as worker:
        seen = wait_for_count(settings, len(events), timeout=120, alive=worker.alive)
    assert seen == len(events)
    assert sorted(stored_event_ids(settings)) == sorted(e.event_id for e in events)
