"""Model folders `MODEL_DIR/<version>/`: each written by its own run, pruned only once that run is over.

A run claims its folder for its whole life with a marker file next to it,
`<version>.in-progress`, whose mtime a heartbeat thread refreshes. Pruning
(after a publish) deletes the folders of versions Redis no longer keeps, but
never one whose marker is fresh: the run that owns it is still going (it may
not have published yet, or it may be an overlapping run after a lost lock).
The marker is created before the folder, so a pruner never sees the folder of
a live run without it. A marker left stale by a crashed run does not protect
its folder.
"""
from __future__ import annotations

import contextlib
import logging
import re
import shutil
import time
from pathlib import Path
from typing import Iterator

import redis

from app.recsys.training import publish
from app.storage.locks import Watchdog

log = logging.getLogger(__name__)

MARKER_SUFFIX = ".in-progress"
HEARTBEAT_S = 20.0
# A marker older than this belongs to a dead run. Generous: a shared model volume
# may be stamped by a file server whose clock is not ours.
STALE_AFTER_S = 300.0

_VERSION_NAME = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{6}")  # what publish.new_version makes


class FolderInUse(RuntimeError):
    """Another live run has claimed this version's folder."""


def _marker(folder: Path) -> Path:
    return folder.with_name(folder.name + MARKER_SUFFIX)


def _touch(marker: Path) -> bool:
    marker.touch()
    return True


@contextlib.contextmanager
def claim(folder: Path, heartbeat_s: float = HEARTBEAT_S) -> Iterator[Path]:
    """Hold `folder` for this run: created with a marker kept fresh until the block ends.

    The folder stays afterwards if the run saved something into it (pruning
    decides its fate), and is removed if it is empty (a rejected run).
    """
    marker = _marker(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        marker.touch(exist_ok=False)
    except FileExistsError:
        raise FolderInUse(f"{folder} is claimed by another run ({marker.name})") from None
    try:
        folder.mkdir(exist_ok=True)
        with Watchdog(lambda: _touch(marker), heartbeat_s, name=f"claim-{folder.name}"):
            yield folder
    finally:
        with contextlib.suppress(OSError):  # not empty: the run saved a model there
            folder.rmdir()
        marker.unlink(missing_ok=True)


def in_progress(folder: Path, stale_after_s: float = STALE_AFTER_S) -> bool:
    """True while the run that claimed `folder` is alive (its marker was refreshed recently)."""
    try:
        return time.time() - _marker(folder).stat().st_mtime < stale_after_s
    except FileNotFoundError:
        return False


def prune_model_dirs(conn: redis.Redis, model_dir: Path, stale_after_s: float = STALE_AFTER_S) -> list[str]:
    """Delete `model_dir/<version>` folders of finished runs whose version Redis no longer keeps.

    Kept: every version still in `recs:versions` (rollback targets, as
    `publish.expire_old_versions` leaves them), the current one, and every
    folder of a run in progress. Folders not named like a version are never
    touched. Stale markers of crashed runs go with their folders. Returns the names removed.
    """
    if not model_dir.is_dir():
        return []
    kept = {version for version, _ in publish.published_versions(conn)} | {publish.current_version(conn)}
    removed = []
    for path in sorted(model_dir.iterdir()):
        if (path.is_dir() and _VERSION_NAME.fullmatch(path.name) and path.name not in kept
                and not in_progress(path, stale_after_s)):
            shutil.rmtree(path, ignore_errors=True)  # a folder another pruner removed first is gone either way
            _marker(path).unlink(missing_ok=True)
            removed.append(path.name)
    if removed:
        log.info("removed %d model folders no longer published: %s", len(removed), ", ".join(removed))
    return removed
