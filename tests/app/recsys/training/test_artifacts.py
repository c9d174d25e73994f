"""Model folders against a real Redis: claimed by their run, pruned only when finished and unpublished."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Iterator

import pytest
import redis

from app.recsys.training import artifacts, publish
from app.settings import Settings
from app.storage import redis_keys as keys
from app.storage.redis_client import connect

pytestmark = [pytest.mark.integration, pytest.mark.redis_db(10)]


@pytest.fixture
def conn(redis_settings: Settings) -> Iterator[redis.Redis]:
    client = connect(redis_settings)
    yield client
    client.close()


def _registered(conn: redis.Redis) -> str:
    """A published version (meta + pointer; the lists do not matter to pruning)."""
    version = publish.new_version()
    publish.activate(conn, version, {"version": version})
    return version


def _saved(model_dir: Path, version: str) -> Path:
    folder = model_dir / version
    folder.mkdir(parents=True)
    (folder / "model.npz").write_bytes(b"x")
    return folder


def test_model_folders_are_pruned_in_step_with_the_published_versions(conn: redis.Redis, tmp_path: Path) -> None:
    versions = [_registered(conn) for _ in range(5)]
    failed = publish.new_version()  # saved, then its publish failed: never registered
    for version in [*versions, failed]:
        _saved(tmp_path, version)
    (tmp_path / "notes").mkdir()  # not a version folder: never touched

    assert artifacts.prune_model_dirs(conn, tmp_path) == [failed]
    # the two oldest only have a TTL so far and can still be rolled back to: their artifacts stay
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*versions, "notes"])

    for key in list(conn.scan_iter(match=keys.version_pattern(versions[0]))):
        conn.delete(key)  # what the TTL does eventually
    publish.expire_old_versions(conn)
    assert artifacts.prune_model_dirs(conn, tmp_path) == [versions[0]]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*versions[1:], "notes"])
    assert artifacts.prune_model_dirs(conn, tmp_path / "missing") == []


def test_pruning_never_touches_the_folder_of_a_running_version(conn: redis.Redis, tmp_path: Path) -> None:
    _registered(conn)
    running = publish.new_version()
    with artifacts.claim(tmp_path / running) as folder:
        (folder / "model.npz").write_bytes(b"x")  # saved, not published yet
        assert artifacts.in_progress(folder)
        assert artifacts.prune_model_dirs(conn, tmp_path) == []
        assert (folder / "model.npz").is_file()
    assert not artifacts.in_progress(tmp_path / running)
    assert artifacts.prune_model_dirs(conn, tmp_path) == [running]  # finished and never published
    assert list(tmp_path.iterdir()) == []


def test_the_heartbeat_keeps_a_long_run_claimed(tmp_path: Path) -> None:
    with artifacts.claim(tmp_path / publish.new_version(), heartbeat_s=0.05) as folder:
        marker = folder.with_name(folder.name + artifacts.MARKER_SUFFIX)
        os.utime(marker, (time.time() - 3600, time.time() - 3600))  # as if the run had been going for an hour
        assert not artifacts.in_progress(folder)
        deadline = time.monotonic() + 60
        while not artifacts.in_progress(folder):  # until the heartbeat has refreshed it
            assert time.monotonic() < deadline, "the heartbeat never refreshed the marker"
            time.sleep(0.02)


def test_a_crashed_runs_stale_claim_does_not_protect_its_folder(conn: redis.Redis, tmp_path: Path) -> None:
    crashed = publish.new_version()
    folder = _saved(tmp_path, crashed)
    marker = folder.with_name(folder.name + artifacts.MARKER_SUFFIX)
    marker.touch()
    old = time.time() - artifacts.STALE_AFTER_S - 1
    os.utime(marker, (old, old))
    assert artifacts.prune_model_dirs(conn, tmp_path) == [crashed]
    assert list(tmp_path.iterdir()) == []


def test_a_folder_is_claimed_by_one_run_only_and_an_empty_one_goes_with_its_claim(tmp_path: Path) -> None:
    version = publish.new_version()
    with artifacts.claim(tmp_path / version):
        with pytest.raises(artifacts.FolderInUse):
            with artifacts.claim(tmp_path / version):
                pass
        assert (tmp_path / version).is_dir()
    assert list(tmp_path.iterdir()) == []  # nothing saved (a rejected run): no folder, no marker
