"""Per-host files of compacted lists, one directory per published version, shared by every
web process of the host (`cinerec serve --processes N`, workers on one machine).

The first process that needs a version reads its lists from Redis
(`app.web.lists.read_lists`), writes them into a temporary directory and
renames it into place (atomic): the others wait on the same
file lock, then memory-map the files, so the host holds one copy in its page
cache however many processes serve. A directory is named after the version
and a digest of (Redis URL, version, publish time, meta): a version
re-published under the same name, or another Redis with the same version
names (tests), never reads a stale copy.

Directories no process has touched for `STALE_S` are deleted by the next
process that switches versions (a process keeps touching the ones it serves;
deleting files another process has mapped is safe on POSIX).
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable

import redis

from app.storage import redis_keys
from app.web.lists import ListArrays, OverBudget, Stopped, read_lists

log = logging.getLogger(__name__)

STALE_S = 3600.0
LOCK_POLL_S = 0.2
KINDS = {"users": "user", "similar": "similar"}  # file prefix -> key segment (`recs:{v}:user:{id}`)
MANIFEST = "manifest.json"
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class Stored:
    """What a version's directory holds: the arrays of each kind that fitted the budget."""

    folder: Path
    arrays: dict[str, ListArrays]  # kind -> arrays; a kind past the budget is absent
    built: bool  # this process read them from Redis (else it mapped another's files)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays.values())


def tag(redis_url: str, version: str, published_at: float | None, meta: bytes) -> str:
    """Directory name of one published version of one Redis."""
    digest = hashlib.blake2b(f"{redis_url}\x1f{version}\x1f{published_at!r}\x1f".encode() + meta,
                             digest_size=8).hexdigest()
    return f"{_SAFE.sub('_', version)[:64]}-{digest}"


def _load(folder: Path) -> dict[str, ListArrays]:
    manifest = json.loads((folder / MANIFEST).read_text())
    return {kind: ListArrays.load(folder, kind) for kind in manifest["kinds"]}


def _build(conn: redis.Redis, version: str, target: Path, max_bytes: int,
           stopping: Callable[[], bool]) -> dict[str, ListArrays]:
    """Read the version's lists (similar first: small, and needed by everyone) into `target`."""
    tmp = target.parent / f".tmp-{target.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        _fill(conn, version, tmp, max_bytes, stopping)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        os.rename(tmp, target)
    except OSError:  # another process built it meanwhile (its lock file was swept under us): use theirs
        shutil.rmtree(tmp, ignore_errors=True)
        if not target.exists():
            raise
    return _load(target)


def _fill(conn: redis.Redis, version: str, tmp: Path, max_bytes: int, stopping: Callable[[], bool]) -> None:
    arrays: dict[str, ListArrays] = {}
    left = max_bytes
    for kind in ("similar", "users"):
        pattern = f"recs:{version}:{KINDS[kind]}:*"
        try:
            arrays[kind] = read_lists(conn, pattern, tmp, kind, left, stopping)
        except OverBudget as exc:
            log.warning("%s: not kept in memory (%s); its lists are read from Redis, hot ones cached", kind, exc)
            for path in tmp.glob(f"{kind}.*"):
                path.unlink()
            continue
        left -= arrays[kind].nbytes
    (tmp / MANIFEST).write_text(json.dumps({"version": version, "kinds": sorted(arrays),
                                            "bytes": {k: a.nbytes for k, a in arrays.items()}}))
    for path in tmp.iterdir():  # on disk before the rename makes the directory visible
        with open(path, "rb") as f:
            os.fsync(f.fileno())


class LocalLists:
    """The host's directory of compacted versions (`LOCAL_DIR/serving`)."""

    def __init__(self, root: Path, redis_url: str, timeout_s: float) -> None:
        self.root = root
        self.redis_url = redis_url
        self.timeout_s = timeout_s
        self._stopping = threading.Event()

    def close(self) -> None:
        """Abandon a build or a wait in progress (the process is stopping): `open` raises Stopped."""
        self._stopping.set()

    def _lock(self, lock: IO[bytes]) -> None:
        """Exclusive lock on the version's lock file, waiting while another process builds it."""
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if self._stopping.wait(LOCK_POLL_S):
                    raise Stopped("stopped while another process built the version") from None

    def open(self, version: str, max_bytes: int) -> Stored | None:
        """The version's arrays, built by this process or another; None when the version is gone.

        Blocking (Redis reads, file I/O, waiting for another process's build):
        run it in a thread.
        """
        conn = redis.Redis.from_url(self.redis_url, socket_timeout=max(self.timeout_s, 30.0),
                                    socket_connect_timeout=self.timeout_s)
        try:
            with conn.pipeline(transaction=False) as pipe:
                pipe.zscore(redis_keys.VERSIONS, version).get(redis_keys.meta(version))
                published_at, meta = pipe.execute()
            if meta is None:
                return None
            folder = self.root / tag(self.redis_url, version, published_at, meta)
            self.root.mkdir(parents=True, exist_ok=True)
            with open(self.root / f".{folder.name}.lock", "a+b") as lock:
                self._lock(lock)  # another process building it: wait for its files
                try:
                    if folder.exists():
                        os.utime(folder)
                        return Stored(folder, _load(folder), built=False)
                    started = time.perf_counter()
                    arrays = _build(conn, version, folder, max_bytes, self._stopping.is_set)
                    log.info("version %s: %s in memory (%.0f MiB) in %.1f s", version,
                             ", ".join(f"{k} {len(a.owners):,}" for k, a in arrays.items()) or "no lists",
                             sum(a.nbytes for a in arrays.values()) / 2**20, time.perf_counter() - started)
                    return Stored(folder, arrays, built=True)
                finally:
                    fcntl.flock(lock, fcntl.LOCK_UN)
        finally:
            conn.close()

    def sweep(self, in_use: set[Path]) -> None:
        """Touch the directories in use; delete others (and leftovers of crashed builds) unused for STALE_S."""
        now = time.time()
        for folder in in_use:
            if folder.exists():
                os.utime(folder)
        if not self.root.exists():
            return
        for path in self.root.iterdir():
            if path in in_use:
                continue
            try:
                if now - path.stat().st_mtime < STALE_S:
                    continue
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                log.info("deleted unused serving copy %s", path.name)
            except FileNotFoundError:  # another process swept it first
                continue
