"""Bulk commands over every Redis key of one published version (`recs:{v}:*`).

Shared by the publisher (expiry, deletion, rollback) and the experiment store
(a running experiment's versions must not expire), which must not import each
other: the publisher asks the store which versions are protected.
"""
from __future__ import annotations

from typing import Callable

import redis
from redis.client import Pipeline

from app.storage import redis_keys as keys

BATCH_KEYS = 5_000  # commands per round trip


def each_key(conn: redis.Redis, version: str, command: Callable[[Pipeline, bytes], object]) -> int:
    """Run `command(pipe, key)` on every key of a version (SCAN), pipelined; returns the key count."""
    count = 0
    pipe = conn.pipeline(transaction=False)
    for key in conn.scan_iter(match=keys.version_pattern(version), count=10_000):
        command(pipe, key)
        count += 1
        if count % BATCH_KEYS == 0:
            pipe.execute()
    pipe.execute()
    return count


def persist(conn: redis.Redis, version: str) -> int:
    """Remove the TTL of every key of `version` (a no-op for a version without one); the key count touched."""
    if conn.ttl(keys.meta(version)) < 0:  # -1: no TTL (the whole version is kept); -2: gone
        return 0
    return each_key(conn, version, lambda pipe, key: pipe.persist(key))


def expire(conn: redis.Redis, version: str, ttl_s: int) -> int:
    """Give every key of `version` a TTL of `ttl_s`; the key count."""
    return each_key(conn, version, lambda pipe, key: pipe.expire(key, ttl_s))
