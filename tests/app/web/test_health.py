"""Readiness checks: the loader check joins the others only where a loader runs (the worker)."""
from __future__ import annotations

import pytest

from app.web import health
from app.web.health import LoaderStalled, loader_progress, run_checks


class Stuck:
    def stall(self) -> str | None:
        return "loader made no progress for 200s with 7 messages to load (LOADER_STALL_S=120)"


class Moving:
    def stall(self) -> str | None:
        return None


async def test_the_loader_check_reports_why_it_is_stuck() -> None:
    assert await loader_progress(Moving()) == "moving (or nothing to load)"
    with pytest.raises(LoaderStalled, match="no progress for 200s"):
        await loader_progress(Stuck())


async def _ok(*args) -> str:
    return "fine"


async def _redis_ok(client) -> tuple[str, str]:
    return "answers", "v1"


@pytest.mark.parametrize("loader, ready, names", [
    (None, True, {"kafka", "clickhouse", "redis", "model"}),  # `cinerec serve`: no loader check
    (Moving(), True, {"kafka", "clickhouse", "redis", "model", "loader"}),
    (Stuck(), False, {"kafka", "clickhouse", "redis", "model", "loader"}),
])
async def test_run_checks_adds_the_loader_check_when_given(monkeypatch, loader, ready, names) -> None:
    monkeypatch.setattr(health, "kafka_reachable", _ok)
    monkeypatch.setattr(health, "clickhouse_reachable", _ok)
    monkeypatch.setattr(health, "redis_and_model", _redis_ok)
    ok, checks = await run_checks(None, None, loader)
    assert (ok, set(checks)) == (ready, names)
    if isinstance(loader, Stuck):
        assert checks["loader"] == {"ok": False, "detail": f"LoaderStalled: {Stuck().stall()}"}
