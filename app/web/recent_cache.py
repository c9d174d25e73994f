"""Recent watches cached in the web process, kept correct by Redis server-assisted client-side caching.

Why: `cinerec serve` (and the worker, for users on partitions it does not
own) read `LRANGE live:recent:{id}` on every request, one network round trip
like the bare one-`GET` handler's, plus our own work. Most requests ask for
a user whose list did not change since the last ask, so a local copy can
answer them; Redis stays the truth and tells us when a copy goes stale.

How (Redis >= 6, `CLIENT TRACKING`, default mode with OPTIN and REDIRECT):
- one dedicated RESP2 connection per process subscribes to
  `__redis__:invalidate` (`run`); its client id is the redirect target;
- a miss is read on the request client as before, with `CLIENT CACHING YES`
  just before the `LRANGE` (and, on a pooled connection not yet tracking for
  this subscriber, `CLIENT TRACKING ON REDIRECT <id> OPTIN` first), all in
  the same single write: Redis then remembers that we read that key, and the
  next write to it (the stats agent's mirror, an expiry, FLUSHDB) sends us
  its name once. Only these keys are tracked, not lists or titles.
- the read/invalidate race: the reply and the invalidation come on two
  connections, so an invalidation may be handled while the read is in
  flight. Before sending, the read leaves a marker (`_pending[user]`, a fresh
  object); an invalidation of the user (or a flush) removes it; the reply is
  stored only if the marker is still the read's own and the tracking epoch
  did not change. A write that Redis ran after our read sends its
  invalidation after our reply's value existed, so it removes the stored copy
  whenever it arrives; one it ran before is already in the reply.
- losing the invalidation connection (an error, or no `pong` within PING_S
  of a ping sent after PING_S of silence) flushes everything and bumps the
  epoch; until a new subscriber is up every request reads through and
  nothing is stored. Reconnects every RETRY_S; every network call has a
  timeout. Staleness is thus bounded by the invalidation's delivery, or by
  2 x PING_S when the connection dies silently.
- bounded: an LRU of `capacity` users (RECENT_CACHE_USERS). An evicted user
  stays tracked by Redis until its next write (one harmless message); Redis
  bounds its own table (`tracking-table-max-keys`, evicting = invalidating).

The complete copy (`complete=True`, RECENT_CACHE_COMPLETE): a user not held
costs a round trip even when the mirror has no key for them (a first ask).
While the mirror has at most `capacity` users, the process holds ALL of it, so
a user absent from it has no recent watches:
- the subscriber turns on `BCAST PREFIX live:recent:` tracking redirected to
  itself (its loss ends the tracking too): every write of such a key is
  announced; only then a SCAN loads every key (`_load`: pipelined LRANGEs
  under markers, as a read), complete if the epoch held to the end;
- a changed user (announced, or a reply not kept) is `_stale`: read from Redis
  when asked, and a kept reply makes them held again (lazily: no re-read of
  every changed user under ingestion);
- a FLUSHDB announcement or a lost connection drops all and loads again; past
  `capacity` users (held + stale) the process uses the per-user LRU above for
  COMPLETE_RETRY_S (logged; `cinerec_recent_cache_complete` 0).
"""
from __future__ import annotations

import asyncio
import logging
import time
from array import array
from collections import OrderedDict
from typing import Any, AsyncIterator, Sequence

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from app.storage import redis_keys
from app.web import metrics
from app.web.reader import REDIS_ERRORS, send_and_read

log = logging.getLogger(__name__)

CHANNEL = "__redis__:invalidate"
PING_S = 1.0  # silence on the invalidation connection before a ping; a pong must come within as long
RETRY_S = 0.5  # between attempts to bring the invalidation connection back
_PREFIX = redis_keys.recent(0)[:-1].encode()  # b"live:recent:"
_CACHING = ("CLIENT", "CACHING", "YES")
COMPLETE_RETRY_S = 3600.0  # after the mirror outgrew a complete copy: per-user caching this long
_SCAN_COUNT = 1000  # keys per SCAN step of the complete copy's load (one pipelined round trip each)


class _Resubscribe(Exception):
    """The subscriber must start again in the other mode (the complete copy no longer fits)."""


class RecentCache:
    """Users' recent watches (`live:recent:{id}`) held while Redis tracks them for us; see the module doc."""

    def __init__(self, redis_url: str, capacity: int, timeout_s: float, complete: bool = False) -> None:
        self.capacity = capacity
        self._want_complete = complete
        self._optin_until = 0.0  # the complete copy did not fit: per-user caching until then
        self._bcast = False  # the subscriber tracks the whole prefix (the complete copy's mode)
        self.complete = False  # every user of the mirror is held or stale: absent = no recent watches
        self._stale: set[int] = set()  # BCAST mode: users whose copy is unknown (changed since read)
        self._resubscribe = False
        self._loader: asyncio.Task | None = None
        self._timeout_s = timeout_s
        # The invalidation connection speaks RESP2: its messages are plain pub/sub replies.
        self._pool = aioredis.ConnectionPool.from_url(
            redis_url, protocol=2, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        # user -> films as int64s (~4x smaller than a tuple of ints), or () for none
        self._films: OrderedDict[int, array | tuple[()]] = OrderedDict()
        self._pending: dict[int, object] = {}
        self._redirect: int | None = None  # the subscriber's client id while tracking is up
        self._epoch = 0  # bumped whenever tracking is lost or (re)established
        # id(request connection) -> (its socket writer, epoch) once it tracks for the current subscriber;
        # a reconnect makes a new writer, so a connection that lost its tracking is never trusted.
        self._tracking: dict[int, tuple[Any, int]] = {}
        self._up = asyncio.Event()
        self._stopping = False  # `stop()`: the listener ends at its next read, cancelled or not
        self.hits = self.misses = self.invalidations = self.flushes = self.fallbacks = 0  # metrics.RECENT_CACHES
        metrics.RECENT_CACHES.caches.add(self)

    @property
    def tracking(self) -> bool:
        """Whether copies are being kept (the invalidation connection is up)."""
        return self._redirect is not None

    async def wait_tracking(self) -> None:
        """Until the invalidation connection is up (tests, startup)."""
        await self._up.wait()

    def __len__(self) -> int:
        return len(self._films)

    def __contains__(self, user_id: int) -> bool:
        """Whether `get` would answer the user without Redis (no LRU or metrics effect)."""
        return user_id in self._films or (self.complete and user_id not in self._stale)

    @property
    def loading(self) -> bool:
        """Whether the complete copy is being (re)loaded: its reads may re-add a user meanwhile."""
        return self._loader is not None and not self._loader.done()

    @property
    def reads_in_flight(self) -> int:
        """Reads whose reply may still be kept (their marker not removed by an invalidation)."""
        return len(self._pending)

    def get(self, user_id: int) -> list[int] | None:
        """The user's recent films, newest first, if a copy is held; None: read Redis (`send_and_read`)."""
        films = self._films.get(user_id)
        if films is None:
            if self.complete and user_id not in self._stale:
                self.hits += 1
                return []
            self.misses += 1
            return None
        if not self._bcast:
            self._films.move_to_end(user_id)
        self.hits += 1
        return list(films)

    async def send_and_read(self, client: aioredis.Redis, user_id: int, commands: Sequence[tuple[Any, ...]],
                            at: int) -> list[Any]:
        """`reader.send_and_read(client, *commands)`, where `commands[at]` is the user's LRANGE: its reply
        is kept if tracking stayed up and no invalidation of the user came while it was in flight."""
        redirect = self._redirect
        if redirect is None:
            return await send_and_read(client, *commands)
        epoch = self._epoch
        if self._bcast:  # every key of the prefix is tracked already: only the marker is needed
            marker = self._pending[user_id] = object()
            try:
                replies = await send_and_read(client, *commands)
            finally:
                own = self._pending.get(user_id) is marker
                if own:
                    del self._pending[user_id]
            if self._epoch == epoch:  # else the copy was dropped meanwhile: nothing to keep or forget
                if own:
                    self._store(user_id, replies[at])
                else:
                    self._forget(user_id)
            return replies
        pool = client.connection_pool
        conn = await pool.get_connection()
        marker = self._pending[user_id] = object()  # set before the LRANGE leaves (see the module doc)
        try:
            known = self._tracking.get(id(conn))
            start = known is None or known[0] is not conn._writer or known[1] != epoch
            extra = [("CLIENT", "TRACKING", "ON", "REDIRECT", redirect, "OPTIN"), _CACHING] if start else [_CACHING]
            sent = [*commands[:at], *extra, *commands[at:]]
            tracked = True
            replies: list[Any] = []
            try:
                await conn.send_packed_command(conn.pack_commands(sent), check_health=False)
                for i in range(len(sent)):
                    if at <= i < at + len(extra):
                        try:
                            await conn.read_response()
                        except ResponseError:  # e.g. the subscriber just went away: read, do not keep
                            tracked = False
                    else:
                        replies.append(await conn.read_response())
            except BaseException:
                await conn.disconnect(nowait=True)
                raise
            if tracked and start:
                self._tracking[id(conn)] = (conn._writer, epoch)
        finally:
            await pool.release(conn)
            if self._pending.get(user_id) is marker:
                del self._pending[user_id]
            else:
                tracked = False  # invalidated (or flushed) while in flight
        if tracked and self._epoch == epoch:
            reply = replies[at]
            self._keep(user_id, array("q", map(int, reply)) if reply else ())
        return replies

    def _keep(self, user_id: int, films: array | tuple[()]) -> None:
        self._films[user_id] = films
        self._films.move_to_end(user_id)
        if len(self._films) > self.capacity:
            self._films.popitem(last=False)

    def _store(self, user_id: int, reply: list[bytes]) -> None:
        """BCAST mode: a kept read of the user (absent from `_films` = no recent watches)."""
        self._stale.discard(user_id)
        if reply:
            self._films[user_id] = array("q", map(int, reply))
        else:
            self._films.pop(user_id, None)

    def _forget(self, user_id: int) -> None:
        """BCAST mode: the user's copy is unknown until a read of them is kept."""
        self._films.pop(user_id, None)
        self._stale.add(user_id)

    def invalidate(self, keys: list[bytes] | None) -> None:
        """Drop the copies of the named keys' users (None: Redis flushed a database: drop all)."""
        if keys is None:
            self.invalidations += len(self._films)
            self._films.clear()
            self._pending.clear()
            if self._bcast:  # the complete copy is void: load it again
                self._epoch += 1
                self.complete = False
                self._stale.clear()
                self._start_load()
            return
        for key in keys:
            if not key.startswith(_PREFIX):
                continue
            try:
                user_id = int(key[len(_PREFIX):])
            except ValueError:  # not a user's key (BCAST announces the whole prefix)
                continue
            self._pending.pop(user_id, None)
            if self._films.pop(user_id, None) is not None:
                self.invalidations += 1
            if self._bcast:
                self._stale.add(user_id)
        if self._bcast and len(self._films) + len(self._stale) > self.capacity:
            self._fall_back(f"{len(self._films) + len(self._stale):,} users held or changed")

    def _fall_back(self, why: str) -> None:
        """The mirror outgrew the complete copy: per-user caching for COMPLETE_RETRY_S."""
        if self._resubscribe:
            return
        self.fallbacks += 1
        self._optin_until = time.monotonic() + COMPLETE_RETRY_S
        self._resubscribe = True
        log.warning("recent-watches cache: the mirror does not fit a complete copy of %d users (%s); "
                    "caching per user for %.0f s", self.capacity, why, COMPLETE_RETRY_S)

    def _start_load(self) -> None:
        if self._loader is not None:
            self._loader.cancel()
        self._loader = asyncio.create_task(self._load(self._epoch), name="cinerec-recent-load")

    async def _load(self, epoch: int) -> None:
        """Read every `live:recent:` key (SCAN + pipelined LRANGEs) into the copy; complete if the
        epoch held (no flush, no reconnect) to the end. Every write since BCAST went on is announced,
        so a key written meanwhile is stale or its read not kept, and SCAN returns every key that
        existed throughout."""
        client = aioredis.Redis(connection_pool=self._pool)
        seen = 0
        try:
            async for keys in _scan_batches(client):
                users = [int(k[len(_PREFIX):]) for k in keys if k[len(_PREFIX):].isdigit()]
                seen += len(users)
                if seen > self.capacity:
                    self._fall_back(f"more than {self.capacity:,} keys")
                    return
                marker = object()  # as a read's (see send_and_read), one for the batch
                for user in users:
                    self._pending[user] = marker
                pipe = client.pipeline(transaction=False)
                for user in users:
                    pipe.lrange(redis_keys.recent(user), 0, redis_keys.RECENT_MAX - 1)
                try:
                    replies = await pipe.execute()
                finally:
                    held = [self._pending.get(user) is marker for user in users]
                    for user, own in zip(users, held):
                        if own:
                            del self._pending[user]
                if self._epoch != epoch:
                    return
                for user, own, reply in zip(users, held, replies):
                    if own:
                        self._store(user, reply)
                    else:
                        self._forget(user)
        except REDIS_ERRORS as exc:
            log.warning("recent-watches cache: loading the complete copy failed (%s); reading Redis for "
                        "users not held until the next reconnect", exc)
            return
        if self._epoch == epoch:
            self.complete = True
            log.info("recent-watches cache: complete copy of %d users loaded", len(self._films))

    def _lost(self) -> None:
        """Tracking is gone: no copy can be trusted any more, nor any read in flight."""
        if self._loader is not None:
            self._loader.cancel()
            self._loader = None
        self._bcast = self.complete = False
        self._stale.clear()
        self._redirect = None
        self._up.clear()
        self._epoch += 1
        self._tracking.clear()
        self.invalidate(None)

    async def run(self) -> None:
        """Keep the invalidation connection up for the life of the process (a task of the web app),
        until `stop()`."""
        while not self._stopping:
            try:
                await self._subscribe_and_listen()
            except _Resubscribe:  # a change of mode, not an outage: no warning, no flush counted
                self._redirect = None
            except REDIS_ERRORS as exc:
                if self._redirect is not None:  # logged once per outage, not per reconnect attempt
                    log.warning("recent-watches cache: invalidation connection lost (%s); reading Redis "
                                "until it is back", exc)
            finally:
                if self._redirect is not None:
                    self.flushes += 1
                self._lost()
            if not self._stopping:
                await asyncio.sleep(RETRY_S)

    def stop(self) -> None:
        """End `run` within PING_S even if its cancellation is lost: redis-py's `read_response(timeout=)`
        answers a cancel that meets its own timeout with None, as for a quiet connection (a shutdown
        hung on it in a full test run)."""
        self._stopping = True

    async def _subscribe_and_listen(self) -> None:
        conn = self._pool.make_connection()
        try:
            await conn.connect()
            await conn.send_command("CLIENT", "ID")
            client_id = int(await conn.read_response())
            self._resubscribe = False
            bcast = self._want_complete and time.monotonic() >= self._optin_until
            if bcast:  # every write of the prefix announced to this connection (redirected to itself)
                await conn.send_command("CLIENT", "TRACKING", "ON", "REDIRECT", client_id, "BCAST",
                                        "PREFIX", _PREFIX)
                await conn.read_response()
            await conn.send_command("SUBSCRIBE", CHANNEL)
            await conn.read_response()
            self._epoch += 1
            self._redirect = client_id
            self._bcast = bcast
            if bcast:
                self._start_load()
            self._up.set()
            log.info("recent-watches cache: tracking on (client %d, %s)", client_id,
                     "complete copy" if bcast else "per user")
            pong_by: float | None = None
            while not self._stopping:
                if self._resubscribe:
                    raise _Resubscribe
                message = await conn.read_response(timeout=PING_S)  # None: nothing within PING_S
                if message is None:
                    if pong_by is not None and time.monotonic() > pong_by:
                        raise TimeoutError(f"no pong within {PING_S} s")
                    if pong_by is None:
                        await conn.send_command("PING")
                        pong_by = time.monotonic() + PING_S
                    continue
                if message[0] == b"message":
                    self.invalidate(message[2])
                elif message[0] == b"pong":
                    pong_by = None
                if pong_by is not None and time.monotonic() > pong_by:
                    raise TimeoutError(f"no pong within {PING_S} s")
        finally:
            await conn.disconnect()

    async def close(self) -> None:
        await self._pool.aclose()


async def _scan_batches(client: aioredis.Redis) -> AsyncIterator[list[bytes]]:
    """The mirror's recent-watches keys, a SCAN step at a time."""
    cursor = 0
    while True:
        cursor, keys = await client.scan(cursor, match=_PREFIX + b"*", count=_SCAN_COUNT)
        if keys:
            yield keys
        if cursor == 0:
            return
