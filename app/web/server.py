"""The one place that wires the web service: routes, and resources opened and
closed together in a `cleanup_ctx`.

`install()` adds everything to an existing aiohttp Application, which is how
the Faust worker serves it (app/web/worker.py puts it on `app.web.web_app`);
`create_web_app()` builds a fresh Application for `cinerec serve`, tests and
benchmarks. Both run the same code, and both serve through
`app.web.protocol.AppRunner` (short JSON errors for unparsable requests).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from typing import AsyncIterator

import redis.asyncio as aioredis
import threadpoolctl
from aiohttp import web
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from app.settings import Settings
from app.analytics.service import Analytics
from app.web import admin, analytics_views, auth, dashboard, experiments_api, handlers, metrics
from app.web.keys import ANALYTICS, CELERY, READER, RECENT, REDIS_PROBE, SETTINGS
from app.web.local_lists import LocalLists
from app.web.model_cache import ModelCache
from app.web.protocol import AppRunner
from app.web.reader import Reader, RecentSource
from app.web.recent_cache import RecentCache

log = logging.getLogger(__name__)

# Redis budget of a request: a slow or dead Redis turns into a degraded answer, not a hang.
REQUEST_REDIS_TIMEOUT_S = 0.25
RESTART_S = 1.0  # `serve_processes`: least time between two starts of one process slot
STOP_S = 30.0  # ... and how long a stopping process may take before it is killed

ROUTES: tuple[tuple[str, str, metrics.Handler], ...] = (
    ("GET", "/v1/users/{user_id}/recommendations", handlers.recommendations),
    ("GET", "/v1/films/popular", handlers.film_list("popular")),
    ("GET", "/v1/films/trending", handlers.film_list("trending")),
    ("GET", "/v1/films/{film_id}/similar", handlers.similar),
    ("GET", "/v1/models/current", handlers.current_model),
    ("POST", "/v1/admin/retrain", auth.protected(auth.ADMIN, handlers.retrain)),
    ("GET", "/health", handlers.alive),
    ("GET", "/ready", handlers.ready),
    ("GET", "/metrics", metrics.metrics_view),
    ("GET", "/openapi.json", handlers.openapi),
)


def redis_client(settings: Settings, timeout_s: float) -> aioredis.Redis:
    """Async Redis client whose every call is bounded by `timeout_s` (connect and read, no retries)."""
    return aioredis.Redis.from_url(
        settings.redis_url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
    )


async def resources(app: web.Application) -> AsyncIterator[None]:
    """Open Redis clients, load the served model, start the pointer poller, open the
    analytics pool; close all on shutdown."""
    settings = app[SETTINGS]
    # Request-time BLAS calls are tiny (a 64-d solve, one matvec): threads only add hand-offs.
    threadpoolctl.threadpool_limits(1, user_api="blas")
    request_client = redis_client(settings, REQUEST_REDIS_TIMEOUT_S)
    background = redis_client(settings, settings.network_timeout_s)
    local = LocalLists(settings.local_dir / "serving", settings.redis_url, settings.network_timeout_s)
    cache = ModelCache(background, local, settings.serve_memory_mb * 2**20)
    if not await cache.refresh():
        log.warning("redis %s unreachable at startup; answering degraded until it is back", settings.redis_url)
    mirror = None
    if settings.recent_cache_users:
        mirror = RecentCache(settings.redis_url, settings.recent_cache_users, settings.network_timeout_s,
                             complete=settings.recent_cache_complete)
    app[READER] = Reader(request_client, cache, app.get(RECENT), mirror=mirror)
    app[REDIS_PROBE] = background
    app[CELERY] = admin.producer(settings)
    app[ANALYTICS] = Analytics(settings)
    tasks = [asyncio.create_task(cache.run(), name="cinerec-model-poller")]
    if mirror is not None:
        tasks.append(asyncio.create_task(mirror.run(), name="cinerec-recent-invalidations"))
    try:
        yield
    finally:
        if mirror is not None:
            mirror.stop()
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if mirror is not None:
            await mirror.close()
        await cache.close()
        app[CELERY].close()
        app[ANALYTICS].close()
        await request_client.aclose()
        await background.aclose()


def install(app: web.Application, settings: Settings, recent: RecentSource | None = None) -> None:
    """Add the service's routes and resources to an existing (not yet started) Application;
    `recent` gives recent watches held in this process (the Faust worker's table)."""
    app[SETTINGS] = settings
    if recent is not None:
        app[RECENT] = recent
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, metrics.instrumented(path, handler))
    # business metrics, /dashboard, /v1/admin/experiments
    for setup_routes in (analytics_views.setup_routes, dashboard.setup_routes, experiments_api.setup_routes):
        setup_routes(app)
    app.cleanup_ctx.append(resources)


def create_web_app(settings: Settings) -> web.Application:
    """A standalone Application serving the recommendation API."""
    app = web.Application()
    install(app, settings)
    return app


async def _serve(settings: Settings, host: str, port: int, reuse_port: bool) -> None:
    runner = AppRunner(create_web_app(settings), handle_signals=True, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, reuse_port=reuse_port or None).start()
        log.info("serving recommendations on http://%s:%d from %s (pid %d)", host, port, settings.redis_url,
                 os.getpid())
        await asyncio.Event().wait()  # until SIGINT/SIGTERM raise GracefulExit
    finally:
        await runner.cleanup()


def serve(settings: Settings, host: str, port: int, reuse_port: bool = False) -> None:
    """Run the standalone server until interrupted (horizontal scaling, benchmarks); with
    `reuse_port`, one of several processes sharing the port (`serve_processes`)."""
    with contextlib.suppress(web.GracefulExit, KeyboardInterrupt):
        asyncio.run(_serve(settings, host, port, reuse_port))


def serve_processes(host: str, port: int, processes: int) -> None:
    """`processes` servers on one port (SO_REUSEPORT: the kernel spreads connections over them).

    Each is a `cinerec serve --reuse-port` child with this process's
    environment; they share the host's in-memory lists (app/web/local_lists.py).
    A child that dies is started again (at most one start per RESTART_S per
    slot); SIGTERM or SIGINT stops them all (killed after STOP_S).
    """
    argv = [sys.executable, "-m", "app.cli", "serve", "--host", host, "--port", str(port), "--reuse-port"]
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    children: list[tuple[subprocess.Popen, float]] = [(subprocess.Popen(argv), time.monotonic())
                                                      for _ in range(processes)]
    log.info("serving on http://%s:%d with %d processes (pids %s)", host, port, processes,
             ", ".join(str(c.pid) for c, _ in children))
    while not stopping:
        time.sleep(0.2)
        for slot, (child, started) in enumerate(children):
            if child.poll() is None or stopping:
                continue
            log.error("serving process %d exited with %s; starting another", child.pid, child.returncode)
            time.sleep(max(0.0, RESTART_S - (time.monotonic() - started)))
            children[slot] = (subprocess.Popen(argv), time.monotonic())
    for child, _ in children:
        if child.poll() is None:
            child.terminate()
    deadline = time.monotonic() + STOP_S
    for child, _ in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.error("serving process %d did not stop in %.0f s; killed", child.pid, STOP_S)
            child.kill()
            child.wait()
