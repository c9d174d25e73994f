"""Mirrors of live stats into Redis for serving: recent watches per user (with the user's counts,
the live features of request-time two-level ranking), trending.

Writes are buffered and flushed every tick in script calls (`_REPLACE_USERS`) of at most
RECENT_CHUNK users, not one round trip per event: a user's list is replaced
atomically, and one flush of a large buffer does not hold the event loop
(and Faust's offset commits) for the time it takes to build every command;
a failed flush keeps its buffer (newer values win) and is retried on the
next tick. The buffer is bounded (RECENT_BUFFER_MAX users):
during a long Redis outage the users updated longest ago are dropped first
(their lists are rewritten the next time they watch something). Values are whole lists taken from the tables,
so re-delivered events and repeated flushes write the same thing (idempotent).
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import time
from typing import Any, Callable, Iterable, Mapping, Sequence

import msgpack
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from app import telemetry
from app.settings import Settings
from app.storage import redis_keys

log = logging.getLogger(__name__)

FLUSH_EVERY_S = 0.5
RECENT_TTL_S = 30 * 86_400
PART_STALE_S = 30.0
TRENDING_SIZE = 100
# Users whose recent list waits for Redis; ~100 bytes each, so ~10 MB at most.
RECENT_BUFFER_MAX = 100_000
# Users per script call: a few ms to build, then the loop runs other work while Redis answers.
RECENT_CHUNK = 1000
# One call replaces a chunk of users atomically (a script runs alone, like MULTI). Per user:
# KEYS recent list, live counts; ARGV[2] one msgpack array of, per user: number of films, the films
# (newest first), counts ('' = none). One argument per chunk instead of one per film: redis-py
# packing each argument in Python was most of the mirror's cost on the worker's event loop.
_REPLACE_USERS = """
local ttl = ARGV[1]
local users = cmsgpack.unpack(ARGV[2])
local at = 1
for i = 1, #KEYS, 2 do
  local n = users[at]
  redis.call('DEL', KEYS[i])
  if n > 0 then
    redis.call('RPUSH', KEYS[i], unpack(users, at + 1, at + n))
    redis.call('EXPIRE', KEYS[i], ttl)
  end
  local counts = users[at + n + 1]
  if counts ~= '' then
    redis.call('SET', KEYS[i + 1], counts, 'EX', ttl)
  end
  at = at + n + 2
end
return #KEYS / 2
"""
# Lua numbers are doubles: a film id above 2**53 would lose digits, so such a list goes as strings.
_LUA_EXACT = 2**53


def redis_client(settings: Settings) -> aioredis.Redis:
    timeout = settings.network_timeout_s
    return aioredis.Redis.from_url(settings.redis_url, socket_timeout=timeout, socket_connect_timeout=timeout)


def worker_name(settings: Settings) -> str:
    """Identifies this worker's part of the trending list (unique per host and web port)."""
    return f"{socket.gethostname()}:{settings.web_port}"


def top_k(counts: Iterable[tuple[int, float]], k: int = TRENDING_SIZE) -> tuple[list[int], list[float]]:
    """The k highest (film, score) pairs, ties broken by smaller film id (stable output)."""
    ranked = sorted(((f, s) for f, s in counts if s > 0), key=lambda fs: (-fs[1], fs[0]))[:k]
    return [f for f, _ in ranked], [float(s) for _, s in ranked]


def merge_parts(
    parts: dict[bytes, bytes], now: float, stale_s: float = PART_STALE_S, k: int = TRENDING_SIZE
) -> tuple[list[int], list[float], list[bytes]]:
    """Merge the workers' trending parts -> (film ids, scores, names of stale parts to drop)."""
    scores: dict[int, float] = {}
    stale = []
    for name, raw in parts.items():
        updated_at, film_ids, film_scores = msgpack.unpackb(raw)
        if now - updated_at > stale_s:
            stale.append(name)
            continue
        for film, score in zip(film_ids, film_scores):
            scores[film] = scores.get(film, 0.0) + score
    film_ids, film_scores = top_k(scores.items(), k)
    return film_ids, film_scores, stale


def user_counts(stats: Mapping[str, Any]) -> bytes:
    """`live:user:{id}` of a user record (agents.folds.apply_user): what request-time ranking reads."""
    return redis_keys.encode_live_user(**redis_keys.live_user_counts(stats))


class LiveMirror:
    """Buffers what serving needs and flushes it to Redis every FLUSH_EVERY_S."""

    def __init__(self, settings: Settings, buffer_max: int = RECENT_BUFFER_MAX) -> None:
        self.settings = settings
        self.redis = redis_client(settings)
        self.name = worker_name(settings)
        self.buffer_max = buffer_max
        self.dropped = 0  # recent lists dropped from a full buffer (never written)
        # oldest update first: (films, the user's record for its counts, encoded at the flush)
        self._recent: dict[int, tuple[list[int], Mapping[str, Any] | None]] = {}
        self._trending: Callable[[], tuple[list[int], list[float]]] | None = None
        self._replace_users = self.redis.register_script(_REPLACE_USERS)

    def set_recent(self, user_id: int, film_ids: Sequence[int], stats: Mapping[str, Any] | None = None) -> None:
        """The user's recent films (newest first) and, with `stats` (the stats agent's user record,
        never changed in place), their counts for `live:user:{id}`; both go in the same flush, the
        counts encoded then (a user changed by several batches between flushes is encoded once)."""
        self._recent.pop(user_id, None)  # re-inserted at the end: the newest update
        self._recent[user_id] = (list(film_ids), stats)
        self._bound()

    def set_user(self, user_id: int, stats: Mapping[str, Any]) -> None:
        """A user record whose recent list changed: the list and the counts (`fold_users`' callback)."""
        self.set_recent(user_id, stats["recent"], stats)

    def _bound(self) -> None:
        """Drop the oldest updates beyond `buffer_max` (keeping the newest)."""
        excess = len(self._recent) - self.buffer_max
        if excess > 0:
            for user_id in list(itertools.islice(self._recent, excess)):
                del self._recent[user_id]
            self.dropped += excess
            telemetry.REDIS_MIRROR_DROPPED.inc(excess)

    def set_trending(self, compute: Callable[[], tuple[list[int], list[float]]]) -> None:
        """Trending changed; `compute()` gives the ranked list, called at the next flush
        (so it runs at most once per flush and always sees the latest counts)."""
        self._trending = compute

    async def flush(self) -> None:
        """Write what is buffered; on a Redis error keep it for the next try."""
        recent, self._recent = self._recent, {}
        trending, self._trending = self._trending, None
        try:
            if recent:
                await self._write_recent(recent)
            if trending is not None:
                await self._write_trending(*trending())
        except (RedisError, OSError) as exc:
            log.warning("redis mirror flush failed (%s); will retry (%d users buffered, %d dropped so far)",
                        exc, len(recent) + len(self._recent), self.dropped)
            for user_id in self._recent:  # updates made during the flush are newer
                recent.pop(user_id, None)
            self._recent = {**recent, **self._recent}
            self._bound()
            self._trending = self._trending or trending

    async def _write_recent(self, recent: dict[int, tuple[list[int], Mapping[str, Any] | None]]) -> None:
        users = list(recent.items())
        for start in range(0, len(users), RECENT_CHUNK):
            chunk = users[start:start + RECENT_CHUNK]
            keys: list[str] = []
            values: list[Any] = []
            for user_id, (film_ids, stats) in chunk:
                keys += (redis_keys.recent(user_id), redis_keys.live_user(user_id))
                if film_ids and max(film_ids) > _LUA_EXACT:
                    film_ids = [str(film) for film in film_ids]
                values.append(len(film_ids))
                values += film_ids
                values.append(b"" if stats is None else user_counts(stats))
            # use_bin_type=False: bytes as msgpack raw strings, the type Redis's cmsgpack reads
            args = [RECENT_TTL_S, msgpack.packb(values, use_bin_type=False)]
            await self._replace_users(keys=keys, args=args, client=self.redis)
            telemetry.REDIS_MIRROR_WRITES.inc(len(chunk))

    async def _write_trending(self, film_ids: list[int], scores: list[float]) -> None:
        part = msgpack.packb([time.time(), film_ids, scores])
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(redis_keys.TRENDING_PARTS, self.name, part)
        pipe.hgetall(redis_keys.TRENDING_PARTS)
        _, parts = await pipe.execute()
        merged_ids, merged_scores, stale = merge_parts(parts, time.time())
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(redis_keys.TRENDING, redis_keys.encode_ranked(merged_ids, merged_scores))
        if stale:
            pipe.hdel(redis_keys.TRENDING_PARTS, *stale)
        await pipe.execute()
        telemetry.REDIS_MIRROR_WRITES.inc(1)

    async def run(self) -> None:
        """Flush forever (a task of the agent that owns this mirror)."""
        try:
            while True:
                await asyncio.sleep(FLUSH_EVERY_S)
                await self.flush()
        finally:
            await self.flush()
            await self.redis.aclose()
