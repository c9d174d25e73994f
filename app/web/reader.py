"""Request-time reads: in-process state first, at most one Redis round trip per request.

Which path answers a user (the `source` of the response, and its `stage`):
  als      precomputed: the version's list (ALS, or a two-level model's), minus recent watches
  ranked   request-time: a user a two-level version never saw, with recent events: its
           `RequestRanker` over fold-in ALS + item-kNN + similar-to-recent + popular + trending
           candidates and the user's live counts (app/web/request_ranking.py)
  foldin   fold-in: the same user under a single-model version: fold-in on item factors
  trending / popular   everyone else (and padding when filtering leaves too few)
Every path answers from `ModelCache.route(user_id)`: the served version, or
during an experiment the version of the user's arm (named in the answer).

Where the inputs come from:
- the user's list: the version's compacted lists in memory (app/web/lists.py)
  once loaded, else Redis (`GET recs:{v}:user:{id}`, hot users cached);
- recent watches: the `RecentSource` when it knows the user (the Faust
  worker's own table, for users on partitions it owns), else this process's
  copy of the Redis mirror kept valid by Redis (`RecentCache`,
  app/web/recent_cache.py), else the mirror itself (`LRANGE live:recent:{id}`);
  the live counts of request-time ranking from the table's record, else
  `GET live:user:{id}` (not cached: they change with every event).
What is not in memory is read in ONE round trip (`send_and_read`), but for the
live counts of a user found listless only by that trip (lists not in memory yet). Redis
errors never reach the client: the answer comes from the in-process popular
list with `degraded=True`, and Redis is skipped for `BREAKER_S` so a dead
server costs each request nothing; an answer that needs no Redis is whole.
"""
from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Callable, Mapping, NamedTuple, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from app.storage import redis_keys
from app.web.lists import decode_raw
from app.web.model_cache import ModelCache, Ranked, Route
from app.web.request_ranking import Explained, explain_items

if TYPE_CHECKING:
    from app.web.recent_cache import RecentCache

BREAKER_S = 1.0
_UNKNOWN = object()  # a film whose title was never looked up
# (list read from Redis, recent watches or live counts read from Redis) -> the answer's `redis_reads`
REDIS_READS = {(False, False): "none", (True, False): "list", (False, True): "recent", (True, True): "list+recent"}
REDIS_ERRORS = (RedisError, OSError, asyncio.TimeoutError)


async def send_and_read(client: aioredis.Redis, *commands: tuple[Any, ...]) -> list[Any]:
    """Run `commands` in one round trip: one write on one pooled connection, then their replies.

    A redis-py pipeline costs ~27 us more Python per request, and a Lua script
    doing a GET and an LRANGE (EVAL) ~7 us more Python plus ~9 us more Redis
    CPU (bench/serve.py, docs/serving.md). A failure mid-way disconnects the
    connection, so no reply is ever read by the wrong request.
    """
    pool = client.connection_pool
    conn = await pool.get_connection()
    try:
        await conn.send_packed_command(conn.pack_commands(commands), check_health=False)
        replies = [await conn.read_response() for _ in commands]
    except BaseException:
        await conn.disconnect(nowait=True)
        raise
    finally:
        await pool.release(conn)
    return replies


class RecentSource(Protocol):
    """Recent watches held in this process (the Faust worker's table)."""

    def recent(self, user_id: int) -> list[int] | None:
        """The user's recent films, newest first; None when this process does not hold them."""

    def counts(self, user_id: int) -> Mapping[str, float] | None:
        """The user's live counts as `live:user:{id}` mirrors them (events, ratings, rating_sum,
        last_seen), asked only after `recent` gave a list; None when there is no record."""


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
    redis_reads: str = "none"  # what was read from Redis for it (a metrics label): REDIS_READS
    model: str | None = None  # the version's model ("two-level", "als", ...), when its meta says
    stage: str | None = None  # recommendations: precomputed, request-time, fold-in, trending or popular
    reasons: Explained | None = None  # explain=1: per film, what put it there (request_ranking.explain_items)


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

    def __init__(self, client: aioredis.Redis, cache: ModelCache, recent: RecentSource | None = None,
                 clock: Callable[[], float] = time.time, mirror: RecentCache | None = None) -> None:
        self._client = client
        self.cache = cache
        self._recent = recent
        self.mirror = mirror  # copies of the Redis mirror, for users `recent` does not hold
        self._skip_until = 0.0
        self.clock = clock  # "now" of request-time features (epoch seconds)

    def _redis_usable(self) -> bool:
        return time.monotonic() >= self._skip_until

    def _trip(self) -> None:
        self._skip_until = time.monotonic() + BREAKER_S

    async def recommend(self, user_id: int, limit: int, explain: bool = False) -> Answer:
        route = self.cache.route(user_id)
        snap = route.snapshot
        lists = snap.lists
        recent = self._recent.recent(user_id) if self._recent is not None else None
        local = recent is not None  # recent watches (and so the counts) from this process's table
        mirror = self.mirror
        if recent is None and mirror is not None:
            recent = mirror.get(user_id)
        counts: Mapping[str, float] | None = None
        raw: bytes | None = b""  # b"": known not to have a list; None: to be read from Redis
        if snap.version is not None and lists.users is None:
            raw = lists.hot.raw(user_id)
        # A two-level version ranks a user without a list at request time, with their live counts:
        # from this process's table with the recent watches, else read with the other reads.
        ranks = snap.ranking is not None and (lists.users.row(user_id) < 0 if lists.users is not None else raw == b"")
        if ranks and local:
            counts = self._recent.counts(user_id)  # type: ignore[union-attr]
        read_list = raw is None
        read_recent = recent is None
        read_counts = ranks and not local  # live counts are not cached: read with the rest
        reads = REDIS_READS[read_list, read_recent or read_counts]
        if read_list or read_recent or read_counts:
            if not self._redis_usable():
                return await self._degraded(limit, route, reads)
            commands = [("GET", redis_keys.user_recs(snap.version, user_id))] if read_list else []
            if read_recent:
                commands.append(("LRANGE", redis_keys.recent(user_id), 0, redis_keys.RECENT_MAX - 1))
            if read_counts:
                commands.append(("GET", redis_keys.live_user(user_id)))
            try:
                if read_recent and mirror is not None:
                    replies = await mirror.send_and_read(self._client, user_id, commands, int(read_list))
                else:
                    replies = await send_and_read(self._client, *commands)
            except REDIS_ERRORS:
                self._trip()
                return await self._degraded(limit, route, reads)
            if read_list:
                raw = replies[0] or b""
                lists.hot.remember(user_id, raw)
            if read_recent:
                recent = [int(f) for f in replies[int(read_list)]]
            if read_counts:
                counts = redis_keys.decode_live_user(replies[-1])
        exclude = set(recent)
        if lists.users is not None:
            ranked = lists.users.get(user_id, limit + len(exclude))  # enough after dropping recent watches
        else:
            ranked = decode_raw(raw)
        reasons = None
        if ranked:
            source, stage = "als", "precomputed"
        else:
            source, ranked = "", ([], [])
            if recent and snap.ranking is not None:
                if not ranks:  # listless found only now (list read from Redis): counts not read yet
                    counts = self._recent.counts(user_id) if local else await self._counts(user_id)  # type: ignore[union-attr]
                got = snap.ranking.rank(recent, counts, self.clock(), limit, explain=explain)
                ranked, reasons = (got.film_ids, got.scores), got.reasons
                source, stage = "ranked", "request-time"
            elif recent and snap.foldin is not None:
                ranked = snap.foldin.top(tuple(recent), limit)
                source, stage = ("foldin", "fold-in") if ranked[0] else ("", "")
            if not ranked[0]:
                source = stage = "trending" if self.cache.trending[0] else "popular"
        if not exclude and len(ranked[0]) >= limit:  # no recent watches to drop: the list's head as it is
            film_ids, scores = ranked[0][:limit], ranked[1][:limit]
        else:
            film_ids, scores = merge_ranked(limit, exclude, ranked, self.cache.trending, self.cache.popular(snap))
        answer = await self._answer(film_ids, scores, source, route, redis_reads=reads, stage=stage)
        if not explain:
            return answer
        why = explain_items(film_ids, dict(zip(ranked[0], reasons or ())), (stage, ranked[0]),
                            ("trending", self.cache.trending[0]), ("popular", self.cache.popular(snap)[0]))
        return answer._replace(reasons=why)

    async def _counts(self, user_id: int) -> Mapping[str, float] | None:
        """The user's live counts (`live:user:{id}`); None when absent or Redis fails (the ranker
        then treats them as unknown, as for a user the stats agent has not mirrored yet)."""
        try:
            return redis_keys.decode_live_user(await self._client.get(redis_keys.live_user(user_id)))
        except REDIS_ERRORS:
            self._trip()
            return None

    async def similar(self, film_id: int, limit: int, user_id: int | None = None) -> Answer:
        """Films like `film_id` from the served version, or from `user_id`'s arm during an experiment."""
        route = self.cache.route(user_id)
        snap = route.snapshot
        if snap.version is None:
            raise NoModel("no model version has been published yet")
        similar = snap.lists.similar
        if similar is not None:
            ranked = similar.get(film_id, limit + 1)
        else:
            if not self._redis_usable():
                return await self._degraded(limit, route)
            try:
                raw = await self._client.get(redis_keys.similar(snap.version, film_id))
            except REDIS_ERRORS:
                self._trip()
                return await self._degraded(limit, route)
            ranked = decode_raw(raw) if raw else None
        if ranked is None:
            raise UnknownFilm(f"film {film_id} is not known to model {snap.version}")
        film_ids, scores = merge_ranked(limit, {film_id}, ranked)
        return await self._answer(film_ids, scores, "similar", route)

    async def films(self, source: str, limit: int) -> Answer:
        """The `popular` list (the latest run's, else the served version's) or the `trending` list (both in-process)."""
        route = self.cache.served
        ranked = self.cache.popular(route.snapshot) if source == "popular" else self.cache.trending
        film_ids, scores = merge_ranked(limit, set(), ranked)
        return await self._answer(film_ids, scores, source, route, degraded=not self.cache.redis_ok)

    async def _degraded(self, limit: int, route: Route, redis_reads: str = "none") -> Answer:
        """The in-process popular list; `redis_reads` names the reads that could not be made."""
        film_ids, scores = merge_ranked(limit, set(), self.cache.popular(route.snapshot), self.cache.trending)
        return await self._answer(film_ids, scores, "popular", route, degraded=True, redis_reads=redis_reads,
                                  stage="popular")

    async def _answer(
        self, film_ids: list[int], scores: list[float], source: str, route: Route, degraded: bool = False,
        redis_reads: str = "none", stage: str | None = None,
    ) -> Answer:
        titles = self.cache.titles
        names = [titles.get(f, _UNKNOWN) for f in film_ids]  # None: a film known to have no title
        if _UNKNOWN in names:
            missing = [f for f, name in zip(film_ids, names) if name is _UNKNOWN]
            if not degraded and self._redis_usable():
                try:
                    found = await self._client.hmget(redis_keys.FILM_TITLES, missing)
                except REDIS_ERRORS:
                    self._trip()
                else:
                    self.cache.remember_titles(missing, found)
            titles = self.cache.titles
            names = [titles.get(f) for f in film_ids]
        snap = route.snapshot
        return Answer(film_ids, scores, names, source, snap.version, degraded, route.experiment, route.arm,
                      redis_reads, snap.model, stage)
