"""Readiness: can this process do its job right now? Each backend check has a short
timeout and they run concurrently, so `/ready` answers within `CHECK_TIMEOUT_S`.

In the Faust worker `/ready` also checks that the loader moves (`loader_progress`);
the standalone `cinerec serve` has no loader and no such check."""
from __future__ import annotations

import asyncio
from typing import Awaitable, Protocol

import redis.asyncio as aioredis

from app.settings import Settings
from app.storage import redis_keys

CHECK_TIMEOUT_S = 1.0


async def kafka_reachable(settings: Settings) -> str:
    """A TCP connection to the first reachable bootstrap broker (what a client needs to start)."""
    errors = []
    for hostport in settings.kafka_bootstrap.split(","):
        host, _, port = hostport.rpartition(":")
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), CHECK_TIMEOUT_S)
        except (OSError, asyncio.TimeoutError) as exc:
            errors.append(f"{hostport}: {exc or type(exc).__name__}")
            continue
        writer.close()
        return f"{hostport} reachable"
    raise ConnectionError("; ".join(errors))


async def clickhouse_reachable(settings: Settings) -> str:
    from app.storage.clickhouse import client

    def select_one() -> str:
        conn = client(settings.with_overrides(network_timeout_s=CHECK_TIMEOUT_S))
        try:
            conn.execute("SELECT 1")
            return f"{conn.connection.host}:{conn.connection.port} answers"
        finally:
            conn.disconnect()

    return await asyncio.to_thread(select_one)


async def redis_and_model(client: aioredis.Redis) -> tuple[str, str | None]:
    """One GET of the version pointer tells both: Redis answers, and which model is published."""
    raw = await client.get(redis_keys.CURRENT)
    return "answers", raw.decode() if raw else None


class Progress(Protocol):
    """What the worker's loader tells readiness (agents.loader.LoaderProgress)."""

    def stall(self) -> str | None:
        """Why the loader is stuck, or None."""


class LoaderStalled(RuntimeError):
    """The loader has work and made no progress for LOADER_STALL_S."""


async def loader_progress(progress: Progress) -> str:
    """Not ready while the loader has events to load and has not moved for LOADER_STALL_S
    (an outage it keeps retrying): readiness must not say 200 while nothing is ingested."""
    reason = progress.stall()
    if reason:
        raise LoaderStalled(reason)
    return "moving (or nothing to load)"


async def run_checks(
    settings: Settings, client: aioredis.Redis, loader: Progress | None = None
) -> tuple[bool, dict[str, dict[str, object]]]:
    """All checks concurrently -> (ready, {name: {ok, detail}}); `loader` only in the worker."""

    async def guarded(check: Awaitable[object]) -> tuple[bool, object]:
        try:
            return True, await asyncio.wait_for(check, CHECK_TIMEOUT_S + 0.5)
        except Exception as exc:  # any failure of a backend is "not ready", with its reason
            return False, f"{type(exc).__name__}: {exc}"

    kafka, clickhouse, redis, *loading = await asyncio.gather(
        guarded(kafka_reachable(settings)),
        guarded(clickhouse_reachable(settings)),
        guarded(redis_and_model(client)),
        *([guarded(loader_progress(loader))] if loader is not None else []),
    )
    if redis[0]:
        detail, version = redis[1]  # type: ignore[misc]
        redis = (True, detail)
        model = (version is not None, f"version {version}" if version else "no model published (recs:current unset)")
    else:
        model = (False, "unknown: redis unreachable")
    named = [("kafka", kafka), ("clickhouse", clickhouse), ("redis", redis), ("model", model)]
    checks = {name: {"ok": ok, "detail": str(detail)} for name, (ok, detail) in named + [("loader", r) for r in loading]}
    return all(c["ok"] for c in checks.values()), checks
