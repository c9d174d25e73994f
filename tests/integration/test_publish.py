"""Versioned publishing against a real Redis (app/recsys/training/publish.py)."""
from __future__ import annotations

from datetime import datetime, timezone
from functools import partial
from typing import Iterator

import numpy as np
import pytest
import redis

from app.experiments import store
from app.experiments.model import Experiment, State
from app.recsys.training import publish
from app.settings import Settings
from app.storage import redis_keys as keys
from app.storage import version_keys
from app.storage.redis_client import connect

pytestmark = pytest.mark.redis_db(10)


@pytest.fixture
def conn(redis_settings: Settings) -> Iterator[redis.Redis]:
    client = connect(redis_settings)
    yield client
    client.close()


def _publish_version(conn: redis.Redis, users: int = 30, switch: bool = True) -> str:
    """A small complete version: user lists, then meta + pointer (unless `switch` is False)."""
    version = publish.new_version()
    user_ids = np.arange(1, users + 1)
    film_ids = np.tile(np.arange(100, 110), (users, 1))
    publish.write_ranked(conn, partial(keys.user_recs, version), user_ids, film_ids,
                         np.linspace(1, 0, 10, dtype=np.float32)[None, :].repeat(users, 0), batch=7)
    publish.activate(conn, version, {"version": version, "metrics": {"ndcg@10": 0.1}}, switch)
    return version


def ttls(conn: redis.Redis, version: str) -> set[int]:
    return {conn.ttl(k) for k in conn.scan_iter(match=keys.version_pattern(version))}


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


def test_a_version_published_without_the_switch_is_registered_but_not_served(conn: redis.Redis) -> None:
    served = _publish_version(conn)
    waiting = _publish_version(conn, switch=False)
    assert publish.current_version(conn) == served
    assert [v for v, _ in publish.published_versions(conn)] == [waiting, served]
    assert publish.read_meta(conn, waiting)["version"] == waiting and ttls(conn, waiting) == {-1}


def _running_experiment(conn: redis.Redis, control: str, challenger: str) -> Experiment:
    """An experiment as `experiments.store.start` leaves it in Redis: mirrored, both versions persisted."""
    at = datetime(2026, 3, 1, tzinfo=timezone.utc)
    experiment = Experiment("exp-keep", control, challenger, created_at=at, started_at=at, state=State.RUNNING)
    store.mirror(conn, experiment)
    store.protect(conn, experiment)
    return experiment


def test_versions_of_the_running_experiment_do_not_age_and_get_their_ttl_back_after(conn: redis.Redis) -> None:
    versions = [_publish_version(conn) for _ in range(5)]
    assert ttls(conn, versions[0]) != {-1}  # beyond the newest three: aging
    _running_experiment(conn, versions[0], versions[1])
    assert ttls(conn, versions[0]) == {-1} and ttls(conn, versions[1]) == {-1}  # persisted at the start
    for _ in range(3):
        _publish_version(conn)  # each publish ages the old versions: not these two
    assert ttls(conn, versions[0]) == {-1} and ttls(conn, versions[1]) == {-1}
    assert ttls(conn, versions[2]) != {-1}
    conn.delete(keys.EXPERIMENT_ACTIVE)  # the experiment ended
    assert set(publish.expire_old_versions(conn)) == {versions[0], versions[1]}
    assert all(0 < t <= publish.OLD_VERSION_TTL_S for t in ttls(conn, versions[0]) | ttls(conn, versions[1]))


def test_a_version_that_joins_an_experiment_while_aging_is_kept(conn: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """The race: expiry reads no experiment; one starts (mirror, then persist: nothing to do, the
    keys have no TTL yet); expiry then sets the TTLs. Expiry reads the protection again
    afterwards and persists the version itself."""
    versions = [_publish_version(conn) for _ in range(4)]
    publish.rollback(conn, versions[0])  # persisted, then aged again below
    publish.rollback(conn, versions[-1])
    real_expire = version_keys.expire

    def start_then_expire(conn_: redis.Redis, version: str, ttl_s: int) -> int:
        _running_experiment(conn_, versions[-1], version)  # between expiry's first look and its TTLs
        return real_expire(conn_, version, ttl_s)

    monkeypatch.setattr(version_keys, "expire", start_then_expire)
    assert publish.expire_old_versions(conn) == []
    assert ttls(conn, versions[0]) == {-1}


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
