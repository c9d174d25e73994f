"""LiveMirror against a real Redis: what serving reads, and a failed flush kept for the next one."""
from __future__ import annotations

import pytest
import redis
from hypothesis import HealthCheck, given, settings, strategies as st

from app.storage import redis_keys
from app.worker_process import free_port
from agents.live import LiveMirror, redis_client

pytestmark = pytest.mark.redis_db(11)


def _read(settings, user_ids):
    conn = redis.Redis.from_url(settings.redis_url, socket_timeout=5)
    try:
        recent = {u: [int(f) for f in conn.lrange(redis_keys.recent(u), 0, -1)] for u in user_ids}
        return recent, redis_keys.decode_ranked(conn.get(redis_keys.TRENDING)), conn.hlen(redis_keys.TRENDING_PARTS)
    finally:
        conn.close()


def _counts(settings, user_id):
    """(the user's decoded live counts or None, the key's TTL in seconds)."""
    conn = redis.Redis.from_url(settings.redis_url, socket_timeout=5)
    try:
        raw = conn.get(redis_keys.live_user(user_id))
        return (None if raw is None else redis_keys.decode_live_user(raw)), conn.ttl(redis_keys.live_user(user_id))
    finally:
        conn.close()


async def test_flush_writes_recent_lists_and_merged_trending(redis_settings) -> None:
    mirror = LiveMirror(redis_settings)
    mirror.set_recent(1, [5, 4])
    mirror.set_recent(2, [9])
    mirror.set_recent(1, [6, 5, 4])  # newer value of the same user wins
    mirror.set_trending(lambda: ([7, 3], [4.0, 2.0]))
    await mirror.flush()
    await mirror.redis.aclose()
    recent, trending, parts = _read(redis_settings, [1, 2])
    assert recent == {1: [6, 5, 4], 2: [9]}
    assert trending == ([7, 3], [4.0, 2.0])
    assert parts == 1


async def test_failed_flush_is_kept_and_written_by_the_next_one(redis_settings) -> None:
    down = redis_settings.with_overrides(redis_url=f"redis://127.0.0.1:{free_port()}/11", network_timeout_s=0.5)
    mirror = LiveMirror(down)
    mirror.set_recent(3, [8])
    mirror.set_trending(lambda: ([8], [1.0]))
    await mirror.flush()  # Redis unreachable: logged, nothing raised, nothing lost
    await mirror.redis.aclose()
    mirror.redis = redis_client(redis_settings)  # Redis is back
    await mirror.flush()
    await mirror.redis.aclose()
    recent, trending, _ = _read(redis_settings, [3])
    assert recent == {3: [8]}
    assert trending == ([8], [1.0])


async def test_the_buffer_keeps_the_newest_updates_when_redis_stays_away(redis_settings) -> None:
    down = redis_settings.with_overrides(redis_url=f"redis://127.0.0.1:{free_port()}/11", network_timeout_s=0.5)
    mirror = LiveMirror(down, buffer_max=3)
    for user in (1, 2, 3, 4):
        mirror.set_recent(user, [user])
    mirror.set_recent(2, [22])  # user 2 updated again: now the newest
    await mirror.flush()  # fails: kept, still bounded
    mirror.set_recent(5, [5])
    await mirror.redis.aclose()
    # 1 dropped at the 4th user, 3 when 5 came: the oldest updates go first
    assert list(mirror._recent) == [4, 2, 5] and mirror._recent[2] == ([22], None)  # (films, no counts)
    assert mirror.dropped == 2
    mirror.redis = redis_client(redis_settings)
    await mirror.flush()
    await mirror.redis.aclose()
    recent, _, _ = _read(redis_settings, [1, 2, 3, 4, 5])
    assert recent == {1: [], 2: [22], 3: [], 4: [4], 5: [5]}


async def test_a_users_counts_go_with_their_recent_list(redis_settings) -> None:
    mirror = LiveMirror(redis_settings)
    stats = {"events": 7, "ratings": 2, "rating_milli": 15_000, "last_seen": 1_700_000_000.5, "recent": [4, 3]}
    mirror.set_recent(1, stats["recent"], stats)
    mirror.set_recent(2, [9])  # no record given: the list only
    await mirror.flush()
    await mirror.redis.aclose()
    counts, ttl = _counts(redis_settings, 1)
    assert counts == {"events": 7, "ratings": 2, "rating_sum": 15.0, "last_seen": 1_700_000_000.5}
    assert 0 < ttl <= 30 * 86_400
    assert _counts(redis_settings, 2)[0] is None
    assert _read(redis_settings, [1, 2])[0] == {1: [4, 3], 2: [9]}


async def test_a_large_buffer_is_written_in_several_script_calls(redis_settings, monkeypatch) -> None:
    from agents import live

    monkeypatch.setattr(live, "RECENT_CHUNK", 7)
    mirror = LiveMirror(redis_settings)
    for user in range(100, 130):
        mirror.set_recent(user, [user, 1])
    await mirror.flush()
    await mirror.redis.aclose()
    recent, _, _ = _read(redis_settings, range(100, 130))
    assert recent == {user: [user, 1] for user in range(100, 130)}


async def test_a_list_is_replaced_whole_expires_and_an_emptied_one_is_removed(redis_settings) -> None:
    mirror = LiveMirror(redis_settings)
    mirror.set_recent(1, [3, 2, 1])
    mirror.set_recent(2, [8])
    await mirror.flush()
    mirror.set_recent(1, [4])  # replaced, not appended to
    mirror.set_recent(2, [])
    await mirror.flush()
    await mirror.redis.aclose()
    conn = redis.Redis.from_url(redis_settings.redis_url, socket_timeout=5)
    try:
        assert 0 < conn.ttl(redis_keys.recent(1)) <= 30 * 86_400
        assert not conn.exists(redis_keys.recent(2))
    finally:
        conn.close()
    assert _read(redis_settings, [1, 2])[0] == {1: [4], 2: []}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(st.integers(1, 2**63 - 1), max_size=redis_keys.RECENT_MAX, unique=True), min_size=1,
                max_size=5))
async def test_any_film_ids_are_written_exactly(redis_settings, lists) -> None:
    """The script reads the films as Lua numbers (doubles): ids past 2**53 must still arrive digit for
    digit (each example replaces the same users' lists whole, so the shared Redis db is no matter)."""
    mirror = LiveMirror(redis_settings)
    for user, films in enumerate(lists, start=500):
        mirror.set_recent(user, films)
    await mirror.flush()
    await mirror.redis.aclose()
    assert _read(redis_settings, range(500, 500 + len(lists)))[0] == dict(enumerate(lists, start=500))


async def test_counts_are_those_of_the_last_record_given_before_the_flush(redis_settings) -> None:
    mirror = LiveMirror(redis_settings)
    first = {"events": 1, "ratings": 0, "rating_milli": 0, "last_seen": 10.0, "recent": [4]}
    second = {"events": 3, "ratings": 1, "rating_milli": 7_500, "last_seen": 12.0, "recent": [5, 4]}
    mirror.set_user(1, first)
    mirror.set_user(1, second)
    await mirror.flush()
    await mirror.redis.aclose()
    assert _counts(redis_settings, 1)[0] == {"events": 3, "ratings": 1, "rating_sum": 7.5, "last_seen": 12.0}
    assert _read(redis_settings, [1])[0] == {1: [5, 4]}
