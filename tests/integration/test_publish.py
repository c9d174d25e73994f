"""Versioned publishing against a real Redis (app/recsys/training/publish.py)."""
from __future__ import annotations

from functools import partial
from typing import Iterator

import numpy as np
import pytest
import redis

from app.recsys.training import publish
from app.settings import Settings
from app.storage import redis_keys as keys
from app.storage.redis_client import connect

pytestmark = pytest.mark.redis_db(10)


@pytest.fixture
def conn(redis_settings: Settings) -> Iterator[redis.Redis]:
    client = connect(redis_settings)
    yield client
    client.close()


def _publish_version(conn: redis.Redis, users: int = 30) -> str:
    """A small complete version: user lists, then meta + pointer."""
    version = publish.new_version()
    user_ids = np.arange(1, users + 1)
    film_ids = np.tile(np.arange(100, 110), (users, 1))
    publish.write_ranked(conn, partial(keys.user_recs, version), user_ids, film_ids,
                         np.linspace(1, 0, 10, dtype=np.float32)[None, :].repeat(users, 0), batch=7)
    publish.activate(conn, version, {"version": version, "metrics": {"ndcg@10": 0.1}})
    return version


def test_write_ranked_writes_every_owner_in_batches(conn: redis.Redis) -> None:
    film_ids = np.array([[5, 6, 7], [8, -1, -1], [-1, -1, -1]])
    scores = np.array([[0.9, 0.5, 0.1], [0.7, -np.inf, -np.inf], [-np.inf] * 3], dtype=np.float32)
    written = publish.write_ranked(conn, partial(keys.user_recs, "v"), np.array([1, 2, 3]), film_ids, scores, batch=2)
    assert written == 3
    assert keys.decode_ranked(conn.get(keys.user_recs("v", 1))) == ([5, 6, 7], [0.9, 0.5, 0.1])
    assert keys.decode_ranked(conn.get(keys.user_recs("v", 2))) == ([8], [0.7])
    assert keys.decode_ranked(conn.get(keys.user_recs("v", 3))) == ([], [])


def test_activate_points_current_at_the_new_version(conn: redis.Redis) -> None:
    first = _publish_version(conn)
    second = _publish_version(conn)
    assert publish.current_version(conn) == second
    assert publish.read_meta(conn, second)["metrics"] == {"ndcg@10": 0.1}
    assert [v for v, _ in publish.published_versions(conn)] == [second, first]


def test_only_versions_beyond_the_newest_three_get_a_ttl(conn: redis.Redis) -> None:
    versions = [_publish_version(conn) for _ in range(5)]
    for old in versions[:2]:
        ttls = {conn.ttl(k) for k in conn.scan_iter(match=keys.version_pattern(old))}
        assert ttls and all(0 < t <= publish.OLD_VERSION_TTL_S for t in ttls)
    for kept in versions[2:]:
        ttls = {conn.ttl(k) for k in conn.scan_iter(match=keys.version_pattern(kept))}
        assert ttls == {-1}


def test_expired_versions_leave_the_registry(conn: redis.Redis) -> None:
    versions = [_publish_version(conn) for _ in range(4)]
    for key in list(conn.scan_iter(match=keys.version_pattern(versions[0]))):
        conn.delete(key)  # what the TTL does eventually
    publish.expire_old_versions(conn)
    assert versions[0] not in [v for v, _ in publish.published_versions(conn)]


def test_rollback_repoints_current_and_keeps_the_version_alive(conn: redis.Redis) -> None:
    versions = [_publish_version(conn) for _ in range(4)]
    oldest = versions[0]  # already has a TTL: beyond the newest three
    publish.rollback(conn, oldest)
    assert publish.current_version(conn) == oldest
    assert {conn.ttl(k) for k in conn.scan_iter(match=keys.version_pattern(oldest))} == {-1}
    assert keys.decode_ranked(conn.get(keys.user_recs(oldest, 1)))[0] == list(range(100, 110))
    _publish_version(conn)
    publish.rollback(conn, versions[-1])
    assert publish.current_version(conn) == versions[-1]


def test_rollback_refuses_unknown_and_expired_versions(conn: redis.Redis) -> None:
    current = _publish_version(conn)
    gone = _publish_version(conn)
    conn.delete(keys.meta(gone))
    publish.rollback(conn, current)
    with pytest.raises(publish.PublishError, match="never published"):
        publish.rollback(conn, "19990101T000000Z-000000")
    with pytest.raises(publish.PublishError, match="expired"):
        publish.rollback(conn, gone)
    assert publish.current_version(conn) == current


def test_titles_hash(conn: redis.Redis) -> None:
    assert publish.write_titles(conn, {1: "Alien", 2: "Heat", 3: "Ran"}, batch=2) == 3
    assert conn.hgetall(keys.FILM_TITLES) == {b"1": b"Alien", b"2": b"Heat", b"3": b"Ran"}


def test_discard_deletes_an_unpublished_version_but_never_the_served_one(conn: redis.Redis) -> None:
    served = _publish_version(conn)
    publish.write_ranked(conn, partial(keys.user_recs, "half-done"), np.arange(1, 12), np.ones((11, 3), dtype=np.int64),
                         np.ones((11, 3)), batch=4)
    assert publish.discard(conn, "half-done") == 11
    assert not list(conn.scan_iter(match=keys.version_pattern("half-done")))
    with pytest.raises(publish.PublishError, match="being served"):
        publish.discard(conn, served)
    assert conn.exists(keys.user_recs(served, 1))
