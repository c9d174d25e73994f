"""HTTP metrics of the recommendation service, in the default Prometheus registry.

Labels are route templates (`/v1/users/{user_id}/recommendations`), never raw
paths, so the number of series stays bounded whatever ids clients send.
"""
from __future__ import annotations

import logging
import time
import weakref
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, Metric, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

if TYPE_CHECKING:
    from app.experiments.model import Experiment

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

REQUESTS = Counter(
    "cinerec_http_requests_total",
    "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
)
REQUEST_SECONDS = Histogram(
    "cinerec_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template.",
    ["route"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
RECOMMENDATIONS = Counter(
    "cinerec_recommendations_total",
    "Recommendation lists served, by the path that answered, whether Redis was down, and what had to be "
    "read from Redis for them: none (list in memory, recent watches from the worker's own table), list, "
    "recent, or list+recent (one round trip either way).",
    ["source", "degraded", "redis_reads"],
)
_RECOMMENDATION_COUNTERS: dict[tuple[str, bool, str], Counter] = {}


def count_recommendation(source: str, degraded: bool, redis_reads: str) -> None:
    counter = _RECOMMENDATION_COUNTERS.get((source, degraded, redis_reads))
    if counter is None:
        counter = RECOMMENDATIONS.labels(source, "true" if degraded else "false", redis_reads)
        _RECOMMENDATION_COUNTERS[(source, degraded, redis_reads)] = counter
    counter.inc()


class RecentCacheCollector:
    """The recent-watches caches' figures (app/web/recent_cache.py), read at scrape time.

    A request adds 1 to a plain int of its cache (~0.1 us) instead of incrementing a
    prometheus Counter (~0.7 us, a lock): a hit is the cheapest answer there is, so its
    bookkeeping should not cost as much as its lookup. Sums over the process's caches (one
    in production; several in tests).
    """

    COUNTERS = (
        ("cinerec_recent_cache_hits", "hits",
         "Recent watches answered from this process's tracked copy of the Redis mirror."),
        ("cinerec_recent_cache_misses", "misses",
         "Recent watches not held in the tracked copy: read from Redis (and kept if tracking allows)."),
        ("cinerec_recent_cache_invalidations", "invalidations",
         "Users' copies dropped because Redis said their `live:recent` key changed (or was flushed)."),
        ("cinerec_recent_cache_flushes", "flushes",
         "Times the invalidation connection was lost: every copy dropped, Redis read until it is back."),
        ("cinerec_recent_cache_fallbacks", "fallbacks",
         "Times the mirror outgrew a complete copy (RECENT_CACHE_USERS): per-user caching for an hour."),
    )

    def __init__(self) -> None:
        self.caches: weakref.WeakSet[Any] = weakref.WeakSet()

    def collect(self) -> Iterator[Metric]:
        caches = list(self.caches)
        for name, attr, doc in self.COUNTERS:
            yield CounterMetricFamily(name, doc, value=sum(getattr(c, attr) for c in caches))
        yield GaugeMetricFamily("cinerec_recent_cache_users", "Users whose recent watches this process holds.",
                                value=sum(len(c) for c in caches))
        yield GaugeMetricFamily("cinerec_recent_cache_tracking",
                                "Caches Redis tracks copies for (invalidation connection up): 1 in a healthy "
                                "process, 0 while it reads through.", value=sum(c.tracking for c in caches))
        yield GaugeMetricFamily("cinerec_recent_cache_complete",
                                "Caches holding a complete copy of the mirror (a user not held has no recent "
                                "watches: no Redis read); 0 while loading, or per-user caching (logged).",
                                value=sum(c.complete for c in caches))


RECENT_CACHES = RecentCacheCollector()
REGISTRY.register(RECENT_CACHES)


MODEL_VERSION = Gauge(
    "cinerec_served_model_info",
    "1 for the model version this process serves (label `version`).",
    ["version"],
)


def set_served_version(version: str | None) -> None:
    """Leave exactly one served-version series at 1 (none while no model is published)."""
    MODEL_VERSION.clear()
    if version is not None:
        MODEL_VERSION.labels(version).set(1)


LISTS_IN_MEMORY = Gauge(
    "cinerec_served_lists_in_memory_bytes",
    "Bytes of a served version's lists held in memory (kind: users or similar; mapped from the host's file).",
    ["version", "kind"],
)


def set_lists_in_memory(sizes: dict[tuple[str, str], int]) -> None:
    """One series per (version, kind) in memory now; versions no longer served disappear."""
    LISTS_IN_MEMORY.clear()
    for (version, kind), nbytes in sizes.items():
        LISTS_IN_MEMORY.labels(version, kind).set(nbytes)


EXPERIMENT = Gauge(
    "cinerec_experiment_info",
    "1 for the experiment this process routes users by (labels: id, control and challenger versions, share).",
    ["experiment", "control", "challenger", "share"],
)


def set_experiment(experiment: "Experiment | None") -> None:
    """Leave at most one experiment series at 1 (none while no experiment runs)."""
    EXPERIMENT.clear()
    if experiment is not None:
        EXPERIMENT.labels(experiment.id, experiment.control, experiment.challenger, f"{experiment.share:g}").set(1)


def instrumented(route: str, handler: Handler) -> Handler:
    """Wrap a handler: count and time it under `route`; an unexpected error is a JSON 500, logged."""
    seconds = REQUEST_SECONDS.labels(route)
    counters: dict[tuple[str, int], Counter] = {}  # labels() costs a lock and a tuple per call

    async def wrapper(request: web.Request) -> web.StreamResponse:
        start = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        except Exception:
            log.exception("%s %s failed", request.method, request.path)
            return web.json_response({"error": "internal error"}, status=500)
        finally:
            seconds.observe(time.perf_counter() - start)
            key = (request.method, status)
            counter = counters.get(key)
            if counter is None:
                counter = counters[key] = REQUESTS.labels(route, request.method, str(status))
            counter.inc()

    wrapper.__name__ = getattr(handler, "__name__", "handler")
    wrapper.__doc__ = handler.__doc__
    return wrapper


async def metrics_view(request: web.Request) -> web.Response:
    """Prometheus text exposition of the default registry (HTTP, model, ingestion series)."""
    response = web.Response(body=generate_latest(REGISTRY))
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response
