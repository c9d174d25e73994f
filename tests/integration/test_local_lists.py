"""The host's files of compacted lists against the real Redis (db 2): built once per version and
host, shared by every process, never stale across re-publishing, swept when unused."""
from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import redis

from app.settings import Settings
from app.storage import redis_keys as keys
from app.web.lists import CompactLists, Stopped
from app.web.local_lists import STALE_S, LocalLists, tag
from tests.integration.web_support import FILMS, publish_version, sync_redis

pytestmark = [pytest.mark.integration, pytest.mark.redis_db(2)]
USERS = np.arange(1, 2_001, dtype=np.int64)


@pytest.fixture
def conn(redis_settings: Settings) -> redis.Redis:
    return sync_redis(redis_settings)


def local(settings: Settings, root: Path) -> LocalLists:
    return LocalLists(root, settings.redis_url, timeout_s=5.0)


def test_two_processes_build_one_copy_with_every_list(redis_settings: Settings, conn: redis.Redis,
                                                      tmp_path: Path) -> None:
    published = publish_version(conn, "v1", seed=1, users=USERS)
    results = {}

    def open_in(name: str) -> None:  # two processes of a host: same directory, own LocalLists
        results[name] = local(redis_settings, tmp_path).open("v1", 2**30)

    threads = [threading.Thread(target=open_in, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.built for r in results.values()) == [False, True]
    assert results["a"].folder == results["b"].folder
    users = CompactLists(results["a"].arrays["users"])
    assert len(users) == len(USERS)
    for user, films in published.user_recs.items():
        assert users.get(user, 100) == keys.decode_ranked(conn.get(keys.user_recs("v1", user)))
        assert users.get(user, 100)[0] == films
    similar = CompactLists(results["b"].arrays["similar"])
    assert similar.get(int(FILMS[0]), 100) == keys.decode_ranked(conn.get(keys.similar("v1", int(FILMS[0]))))
    assert not list(tmp_path.glob(".tmp-*"))


def test_a_republished_version_or_another_redis_gets_its_own_copy(redis_settings: Settings, conn: redis.Redis,
                                                                   tmp_path: Path) -> None:
    publish_version(conn, "v1", seed=1, users=USERS)
    first = local(redis_settings, tmp_path).open("v1", 2**30)
    publish_version(conn, "v1", seed=2, users=USERS)  # same name, new content
    second = local(redis_settings, tmp_path).open("v1", 2**30)
    assert second.built and second.folder != first.folder
    assert CompactLists(second.arrays["users"]).get(1, 100) == keys.decode_ranked(conn.get(keys.user_recs("v1", 1)))
    assert tag("redis://a:6379/0", "v1", 1.0, b"{}") != tag("redis://a:6379/2", "v1", 1.0, b"{}")  # another Redis
    assert local(redis_settings, tmp_path).open("v9", 2**30) is None  # no such version


def test_past_the_budget_users_stay_in_redis(redis_settings: Settings, conn: redis.Redis, tmp_path: Path) -> None:
    publish_version(conn, "v1", seed=1, users=USERS)
    stored = local(redis_settings, tmp_path).open("v1", 64 * 1024)  # similar lists fit, 2,000 user lists do not
    assert set(stored.arrays) == {"similar"}
    again = local(redis_settings, tmp_path).open("v1", 2**30)  # the host's copy says what was kept
    assert set(again.arrays) == {"similar"} and not again.built


def test_sweep_keeps_copies_in_use_and_drops_stale_ones(redis_settings: Settings, conn: redis.Redis,
                                                        tmp_path: Path) -> None:
    publish_version(conn, "v1", seed=1, users=USERS)
    publish_version(conn, "v2", seed=2, users=USERS)
    lists = local(redis_settings, tmp_path)
    used, unused = lists.open("v1", 2**30).folder, lists.open("v2", 2**30).folder
    old = time.time() - STALE_S - 10
    for folder in (used, unused):
        os.utime(folder, (old, old))
    lists.sweep({used})
    assert used.exists() and not unused.exists()
    assert time.time() - used.stat().st_mtime < 60  # touched: in use


def test_a_stopping_process_abandons_its_build_and_its_wait(redis_settings: Settings, conn: redis.Redis,
                                                            tmp_path: Path) -> None:
    publish_version(conn, "v1", seed=1, users=USERS)
    stopping = local(redis_settings, tmp_path)
    stopping.close()
    with pytest.raises(Stopped):
        stopping.open("v1", 2**30)
    assert not list(tmp_path.glob(".tmp-*")) and not [p for p in tmp_path.iterdir() if p.is_dir()]
    folder = local(redis_settings, tmp_path).open("v1", 2**30).folder  # nothing half-built was left behind
    lock = tmp_path / f".{folder.name}.lock"
    with open(lock, "a+b") as held:  # another process holds the version's lock (building it)
        fcntl.flock(held, fcntl.LOCK_EX)
        waiting = local(redis_settings, tmp_path)
        result: list = []
        thread = threading.Thread(target=lambda: result.append(pytest.raises(Stopped, waiting.open, "v1", 2**30)))
        thread.start()
        waiting.close()
        thread.join(timeout=30)
        assert not thread.is_alive() and result
