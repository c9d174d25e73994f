"""In-process copy of what every request needs: the served version, its popular
list, fold-in factors, a two-level version's request-time ranker
(app/web/request_ranking.py), the trending list, the latest run's popular and trending
lists (the fallbacks while nothing else has any), film titles, and the running
experiment with both of its versions loaded.

A background task polls `recs:current` and `exp:active` every `POLL_S`:
requests never wait for them, a new published version (factors included) or
an experiment started or stopped is picked up without a restart, and when
Redis is down the last good copy keeps answering (degraded).

Which version answers a user is `ModelCache.route(user_id)`: the served one,
or while an experiment runs the version of the user's arm (a stable hash of
experiment id and user id, app.experiments.assignment), on every path.

Each loaded version's user and similar lists are then brought into memory in
the background (`app.web.local_lists`: compacted arrays in a file per version
shared by the host's processes), the served version first, within
`memory_bytes` for all versions; until they are ready, and for what does not
fit, lists are read from Redis as before (hot users cached).
"""
from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, NamedTuple

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from app.experiments.assignment import CHALLENGER, CONTROL, arm_of
from app.experiments.model import Experiment
from app.storage import redis_keys
from app.web import metrics
from app.web.foldin_cache import FoldInRanker, Ranked, load_ranker
from app.web.request_ranking import load_request_ranker
from app.web.lists import Stopped, VersionLists
from app.web.local_lists import LocalLists

if TYPE_CHECKING:  # imported in a thread when a two-level version is loaded (LightGBM)
    from app.recsys.ranking.online import RequestRanker

log = logging.getLogger(__name__)

POLL_S = 1.0
SWEEP_S = 60.0  # how often the host's unused serving copies are looked for
LOAD_RETRY_S = 60.0  # after a failed load of a version's lists into memory
# Titles rarely change; reloading them this often bounds how stale one can be.
TITLE_TTL_S = 60.0

EMPTY: Ranked = ([], [])


@dataclass(frozen=True, eq=False)
class Snapshot:
    """One published version as served: replaced as a whole, never mutated (but for its
    lists, brought into memory in the background)."""

    version: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    popular: Ranked = EMPTY
    foldin: FoldInRanker | None = None  # None when the version has no (readable) factors
    ranking: RequestRanker | None = None  # a two-level version's request-time ranker (None otherwise)
    lists: VersionLists = field(default_factory=VersionLists)  # filled in the background (module docstring)

    @property
    def model(self) -> str | None:
        """The version's model as published ("two-level", "als", ...; None when its meta does not say)."""
        return self.meta.get("shipped") or self.meta.get("params", {}).get("model")


class Route(NamedTuple):
    """The version that answers a request, and the experiment arm that chose it (None outside one)."""

    snapshot: Snapshot
    experiment: str | None = None
    arm: str | None = None


class Arms:
    """The running experiment as served: both versions loaded, one route per arm."""

    def __init__(self, experiment: Experiment, control: Snapshot, challenger: Snapshot) -> None:
        self.experiment = experiment
        self.control = Route(control, experiment.id, CONTROL)
        self.challenger = Route(challenger, experiment.id, CHALLENGER)
        self._seed, self._threshold = experiment.hash_seed, experiment.threshold

    def route(self, user_id: int) -> Route:
        """The user's arm (~0.6 us: bench/assignment.py); the same in every process and in SQL."""
        return self.challenger if arm_of(self._seed, self._threshold, user_id) == CHALLENGER else self.control


class ModelCache:
    """Served state shared by all requests, refreshed by `run()` in the background."""

    def __init__(self, client: aioredis.Redis, local: LocalLists | None = None, memory_bytes: int = 0) -> None:
        self._client = client
        self._local = local if memory_bytes > 0 else None
        self._memory_bytes = memory_bytes
        self._loading = asyncio.Lock()  # one version's lists at a time, the served one first
        self._tasks: set[asyncio.Task] = set()
        self._swept_at = -SWEEP_S
        self.snapshot = Snapshot()
        self.served = Route(self.snapshot)  # `snapshot` as a route, for requests outside an experiment
        self.arms: Arms | None = None
        self._experiment_raw: bytes | None = None  # `exp:active` as last applied (or rejected)
        self.trending: Ranked = EMPTY  # live (the stats agent's), else the latest run's
        self.latest_popular: Ranked = EMPTY  # the latest run's, published whatever its gate said
        # film id -> title, or None for a film without one (cached too, so it costs no lookup)
        self.titles: dict[int, str | None] = {}
        self._titles_at = -TITLE_TTL_S  # monotonic time of the last full load; loaded on the first refresh
        self.redis_ok = False

    async def refresh(self) -> bool:
        """Poll the pointer and trending once; load a new version fully before switching to it."""
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.get(redis_keys.CURRENT).get(redis_keys.TRENDING)
                pipe.get(redis_keys.TRENDING_LATEST).get(redis_keys.POPULAR_LATEST)
                pipe.get(redis_keys.EXPERIMENT_ACTIVE)
                current, trending, trending_latest, popular_latest, experiment = await pipe.execute()
            version = current.decode() if current else None
            if version != self.snapshot.version:
                await self._switch(version)
            if experiment != self._experiment_raw:
                await self._set_experiment(experiment)
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            if self.redis_ok:
                log.warning("redis unreachable, serving the in-process copy (degraded): %s", exc)
            self.redis_ok = False
            return False
        live = redis_keys.decode_ranked(trending)
        self.trending = live if live[0] else redis_keys.decode_ranked(trending_latest)
        self.latest_popular = redis_keys.decode_ranked(popular_latest)
        if not self.redis_ok:
            log.info("redis reachable; serving version %s", self.snapshot.version)
        self.redis_ok = True
        if time.monotonic() - self._titles_at > TITLE_TTL_S:
            await self._load_titles()
        self._schedule_loads()  # a load that failed is tried again
        self._sweep()
        return True

    async def _switch(self, version: str | None) -> None:
        old = self.snapshot.version
        self.snapshot = Snapshot() if version is None else await self._snapshot_of(version)
        self.served = Route(self.snapshot)
        self._schedule_loads()
        self._report_memory()
        metrics.set_served_version(version)
        log.info("serving model version %s (was %s)", version, old)

    async def _snapshot_of(self, version: str) -> Snapshot:
        """A version's snapshot: one already loaded (served or in the experiment), else read from Redis."""
        for snap in self.snapshots():
            if snap.version == version:
                return snap
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.get(redis_keys.meta(version))
            pipe.get(redis_keys.popular(version))
            pipe.get(redis_keys.factors(version))
            pipe.get(redis_keys.ranking(version))
            meta, popular, factors, ranking = await pipe.execute()
        if meta is None:
            log.warning("version %s has no meta in Redis (expired or never published): its users get fallbacks", version)
        foldin = await asyncio.to_thread(load_ranker, factors)
        request_ranker = await asyncio.to_thread(load_request_ranker, ranking, version)
        return Snapshot(
            version=version,
            meta=json.loads(meta) if meta else {},
            popular=redis_keys.decode_ranked(popular),
            foldin=foldin,
            ranking=request_ranker,
            lists=VersionLists(self._memory_left()),
        )

    def _schedule_loads(self) -> None:
        """Start bringing into memory the lists of the versions in use that are not there yet."""
        if self._local is None:
            return
        now = time.monotonic()
        for snap in self.snapshots():
            if snap.lists.scheduled or not snap.meta or now < snap.lists.retry_at:
                continue
            snap.lists.scheduled = True
            task = asyncio.create_task(self._load_lists(snap), name=f"cinerec-lists-{snap.version}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def snapshots(self) -> list[Snapshot]:
        """The versions in use: the served one first, then the experiment's."""
        arms = self.arms
        found = [self.snapshot, *((arms.control.snapshot, arms.challenger.snapshot) if arms else ())]
        return [snap for i, snap in enumerate(found)
                if snap.version is not None and not any(snap is other for other in found[:i])]

    def _memory_left(self, besides: Snapshot | None = None) -> int:
        used = sum(snap.lists.nbytes for snap in self.snapshots() if snap is not besides)
        return max(0, self._memory_bytes - used)

    async def _load_lists(self, snap: Snapshot) -> None:
        """Bring a version's lists into memory (after the versions ahead of it); errors only log."""
        assert self._local is not None
        async with self._loading:
            if not any(snap is other for other in self.snapshots()):
                return  # replaced before its turn came
            try:
                stored = await asyncio.to_thread(self._local.open, snap.version, self._memory_left(besides=snap))
            except Stopped:
                return
            except Exception:  # Redis or disk trouble: read this version from Redis, try again later
                log.exception("cannot bring version %s into memory; its lists are read from Redis until a retry "
                              "in %.0f s", snap.version, LOAD_RETRY_S)
                snap.lists.scheduled, snap.lists.retry_at = False, time.monotonic() + LOAD_RETRY_S
                return
            if stored is not None:
                snap.lists.loaded(stored.folder, stored.arrays, self._memory_left(besides=snap) - stored.nbytes)
            self._report_memory()

    def _report_memory(self) -> None:
        metrics.set_lists_in_memory({(snap.version, kind): lists.arrays.nbytes for snap in self.snapshots()
                                     for kind, lists in (("users", snap.lists.users), ("similar", snap.lists.similar))
                                     if lists is not None})

    async def close(self) -> None:
        """Stop background loads (a build running in its thread stops at its next batch)."""
        if self._local is not None:
            self._local.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _sweep(self) -> None:
        """Keep the host's copies in use fresh and drop stale ones, at most every SWEEP_S."""
        if self._local is None or time.monotonic() - self._swept_at < SWEEP_S:
            return
        self._swept_at = time.monotonic()
        in_use = {snap.lists.folder for snap in self.snapshots() if snap.lists.folder is not None}
        try:
            self._local.sweep(in_use)
        except OSError as exc:
            log.warning("cannot sweep %s: %s", self._local.root, exc)

    async def _set_experiment(self, raw: bytes | None) -> None:
        """Follow `exp:active`: load both versions before routing anybody to them.

        A mirror that does not parse is logged once and the previous routing kept
        (like a broken meta): a half-understood experiment must not split traffic.
        """
        if raw is None:
            if self.arms is not None:
                log.info("experiment %s no longer running: everyone gets %s", self.arms.experiment.id,
                         self.snapshot.version)
            self.arms, self._experiment_raw = None, None
            self._report_memory()
            metrics.set_experiment(None)
            return
        try:
            experiment = Experiment.from_json(json.loads(raw))
        except (ValueError, TypeError, KeyError) as exc:
            log.error("cannot read %s (%s); keeping the previous routing", redis_keys.EXPERIMENT_ACTIVE, exc)
            self._experiment_raw = raw  # logged once, not every poll
            return
        control = await self._snapshot_of(experiment.control)  # a Redis error here: retried at the next poll
        challenger = await self._snapshot_of(experiment.challenger)
        self.arms = Arms(experiment, control, challenger)
        self._schedule_loads()
        self._report_memory()
        self._experiment_raw = raw
        metrics.set_experiment(experiment)
        log.info("experiment %s running: %s (control) vs %s (challenger, %.0f%% of users)", experiment.id,
                 experiment.control, experiment.challenger, 100 * experiment.share)

    def route(self, user_id: int | None) -> Route:
        """The version (and arm) answering `user_id`; the served version when no experiment runs
        or no user is known (popular, trending, similar films asked without a user)."""
        arms = self.arms
        if arms is None or user_id is None:
            return self.served
        return arms.route(user_id)

    async def _load_titles(self) -> None:
        """The whole `films:title` hash (a catalog is at most ~100k short strings), so that
        requests find every title in memory; films added since are fetched by `Reader`."""
        try:
            raw = await self._client.hgetall(redis_keys.FILM_TITLES)
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            log.warning("cannot load film titles, keeping %d cached: %s", len(self.titles), exc)
            return
        self.titles = {int(film_id): title.decode() for film_id, title in raw.items()}
        self._titles_at = time.monotonic()

    def popular(self, snap: Snapshot) -> Ranked:
        """The latest run's popular list (fresh even when its model was rejected), else the served version's."""
        return self.latest_popular if self.latest_popular[0] else snap.popular

    def remember_titles(self, film_ids: Iterable[int], titles: Iterable[bytes | None]) -> None:
        for film_id, title in zip(film_ids, titles):
            self.titles[film_id] = title.decode() if title is not None else None

    async def run(self) -> None:
        """Poll forever after the caller's first `refresh` (cancelled on shutdown); errors are never fatal."""
        while True:
            await asyncio.sleep(POLL_S)
            try:
                await self.refresh()
            except Exception:  # e.g. a malformed meta/popular value: keep the previous snapshot
                log.exception("cannot refresh the served model; keeping version %s", self.snapshot.version)
