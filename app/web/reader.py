"""Request-time reads: one Redis round trip per request plus in-process state (ModelCache).

Which path answers a user (the `source` of the response):
  als      the precomputed list of the served version, minus recent watches
  foldin   a user the model never saw but with recent events: fold-in on item factors
  trending / popular   everyone else (and padding when filtering leaves too few)
Every path answers from `ModelCache.route(user_id)`: the served version, or
during an experiment the version of the user's arm (named in the answer).
Redis errors never reach the client: the answer comes from the in-process
popular list with `degraded=True`, and Redis is skipped for `BREAKER_S` so a
dead server costs each request nothing.
"""
from __future__ import annotations

import asyncio
import time
from typing import NamedTuple

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from app.storage import redis_keys
from app.web.model_cache import ModelCache, Ranked, Route

BREAKER_S = 1.0
REDIS_ERRORS = (RedisError, OSError, asyncio.TimeoutError)


async def get_and_lrange(
    client: aioredis.Redis, key: str, list_key: str, count: int
) -> tuple[bytes | None, list[bytes]]:
    """GET `key` and the first `count` items of `list_key` in one round trip.

    Both commands go out in one write on one pooled connection and their two
    replies are read back: a redis-py pipeline costs ~27 us more Python per
    request, and a Lua script doing both (EVAL) ~7 us more Python plus ~9 us
    more Redis CPU (bench/serve.py, docs/serving.md). A failure mid-way
    disconnects the connection, so no reply is ever read by the wrong request.
    """
    pool = client.connection_pool
    conn = await pool.get_connection()
    try:
        await conn.send_packed_command(
            conn.pack_commands((("GET", key), ("LRANGE", list_key, 0, count - 1))), check_health=False
        )
        value = await conn.read_response()
        items = await conn.read_response()
    except BaseException:
        await conn.disconnect(nowait=True)
        raise
    finally:
        await pool.release(conn)
    return value, items


class UnknownFilm(LookupError):
    """The served version has no similar-films list for this film."""


class NoModel(LookupError):
    """No model version has been published yet."""


class Answer(NamedTuple):
    """A ranked list with where it came from; titles aligned with film_ids (None if unknown).

    A NamedTuple: built once per request, ~0.5 us cheaper than a frozen dataclass."""

    film_ids: list[int]
    scores: list[float]
    titles: list[str | None]
    source: str
    version: str | None
    degraded: bool = False
    experiment: str | None = None  # the running experiment and the user's arm in it, when one chose the version
    arm: str | None = None


def merge_ranked(limit: int, exclude: set[int], *lists: Ranked) -> Ranked:
    """First `limit` films of the lists in order, skipping excluded films and repeats."""
    seen = set(exclude)
    out_ids: list[int] = []
    out_scores: list[float] = []
    for film_ids, scores in lists:
        for film_id, score in zip(film_ids, scores):
            if film_id not in seen:
                seen.add(film_id)
                out_ids.append(film_id)
                out_scores.append(score)
                if len(out_ids) >= limit:
                    return out_ids, out_scores
    return out_ids, out_scores


class Reader:
    """Domain logic of the read endpoints; raises UnknownFilm / NoModel, never Redis errors."""

    def __init__(self, client: aioredis.Redis, cache: ModelCache) -> None:
        self._client = client
        self.cache = cache
        self._skip_until = 0.0

    def _redis_usable(self) -> bool:
        return time.monotonic() >= self._skip_until

    def _trip(self) -> None:
        self._skip_until = time.monotonic() + BREAKER_S

    async def recommend(self, user_id: int, limit: int) -> Answer:
        route = self.cache.route(user_id)
        snap = route.snapshot
        if not self._redis_usable():
            return await self._degraded(limit, route)
        recent_key = redis_keys.recent(user_id)
        try:
            if snap.version is None:
                raw, recent_raw = None, await self._client.lrange(recent_key, 0, redis_keys.RECENT_MAX - 1)
            else:
                raw, recent_raw = await get_and_lrange(
                    self._client, redis_keys.user_recs(snap.version, user_id), recent_key, redis_keys.RECENT_MAX
                )
        except REDIS_ERRORS:
            self._trip()
            return await self._degraded(limit, route)
        recent = [int(f) for f in recent_raw]
        exclude = set(recent)
        if raw:
            source, ranked = "als", redis_keys.decode_ranked(raw)
        else:
            source, ranked = "", ([], [])
            if recent and snap.foldin is not None:
                ranked = snap.foldin.top(tuple(recent), limit)
                source = "foldin" if ranked[0] else ""
            if not source:
                source = "trending" if self.cache.trending[0] else "popular"
        film_ids, scores = merge_ranked(limit, exclude, ranked, self.cache.trending, self.cache.popular(snap))
        return await self._answer(film_ids, scores, source, route)

    async def similar(self, film_id: int, limit: int, user_id: int | None = None) -> Answer:
        """Films like `film_id` from the served version, or from `user_id`'s arm during an experiment."""
        route = self.cache.route(user_id)
        snap = route.snapshot
        if not self._redis_usable():
            return await self._degraded(limit, route)
        if snap.version is None:
            raise NoModel("no model version has been published yet")
        try:
            raw = await self._client.get(redis_keys.similar(snap.version, film_id))
        except REDIS_ERRORS:
            self._trip()
            return await self._degraded(limit, route)
        if raw is None:
            raise UnknownFilm(f"film {film_id} is not known to model {snap.version}")
        film_ids, scores = merge_ranked(limit, {film_id}, redis_keys.decode_ranked(raw))
        return await self._answer(film_ids, scores, "similar", route)

    async def films(self, source: str, limit: int) -> Answer:
        """The `popular` list (the latest run's, else the served version's) or the `trending` list (both in-process)."""
        route = self.cache.served
        ranked = self.cache.popular(route.snapshot) if source == "popular" else self.cache.trending
        film_ids, scores = merge_ranked(limit, set(), ranked)
        return await self._answer(film_ids, scores, source, route, degraded=not self.cache.redis_ok)

    async def _degraded(self, limit: int, route: Route) -> Answer:
        film_ids, scores = merge_ranked(limit, set(), self.cache.popular(route.snapshot), self.cache.trending)
        return await self._answer(film_ids, scores, "popular", route, degraded=True)

    async def _answer(
        self, film_ids: list[int], scores: list[float], source: str, route: Route, degraded: bool = False
    ) -> Answer:
        missing = [f for f in film_ids if f not in self.cache.titles]
        if missing and not degraded and self._redis_usable():
            try:
                found = await self._client.hmget(redis_keys.FILM_TITLES, missing)
            except REDIS_ERRORS:
                self._trip()
            else:
                self.cache.remember_titles(missing, found)
        titles = self.cache.titles
        return Answer(film_ids, scores, [titles.get(f) for f in film_ids], source, route.snapshot.version, degraded,
                      route.experiment, route.arm)
