"""One version's ranked lists (per user, or similar films per film) in a compact in-process form.

The web answers warm users from these arrays instead of a Redis `GET` per
request. Redis stays the source of truth: the arrays are read from the
version's keys once (`read_lists`) and a published version never changes, so
an answer from them is the answer the key gives.

Layout: `owners` (sorted user or film ids) with, per owner, `starts` and
`lengths` into `films` and `scores` (all lists end to end, in the order they
were read: batches are appended to the files as they come, so building needs
the memory of one batch, not of the version). Scores are published rounded
to 5 decimal places (`encode_ranked_rows`), so they are stored as the
integers `k = score * 1e5` in int32 and read back as `k / 1e5`: the nearest
double to the 5-place decimal, which is exactly the double Redis holds
(checked on every batch; a version whose scores do not pass is stored as
float64). Film ids are int32 unless one does not fit. 8 bytes per entry and
20 per list, instead of ~12 per entry in msgpack plus ~100 of key and Redis
overhead per list.

`HotLists` is the fallback when a version does not fit the memory budget: an
LRU of raw values read from Redis for the users asked most recently.
"""
from __future__ import annotations

import collections
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import redis

from app.storage import redis_keys
from app.web.list_codec import decode_values

log = logging.getLogger(__name__)

Ranked = tuple[list[int], list[float]]
SCALE = 1e5  # 5 decimal places, as published
_unscale = SCALE.__rtruediv__  # k -> k / 1e5, correctly rounded: the double Redis holds (~1 us less than numpy's)
FIELDS = ("owners", "starts", "lengths", "films", "scores")
MGET_BATCH = 5_000
SCAN_COUNT = 10_000
_I32 = np.iinfo(np.int32)


@dataclass(frozen=True)
class ListArrays:
    """The arrays of one kind of list of one version (see the module docstring)."""

    owners: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray
    films: np.ndarray
    scores: np.ndarray

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, name).nbytes for name in FIELDS)

    @classmethod
    def load(cls, folder: Path, kind: str) -> "ListArrays":
        """Memory-mapped, read-only: every process of the host shares the same pages."""
        meta = json.loads((folder / f"{kind}.json").read_text())
        index = {name: np.load(folder / f"{kind}.{name}.npy", mmap_mode="r", allow_pickle=False)
                 for name in ("owners", "starts", "lengths")}
        flat = {name: np.memmap(folder / f"{kind}.{name}.bin", dtype=meta[name], mode="r", shape=(meta["entries"],))
                if meta["entries"] else np.zeros(0, dtype=meta[name]) for name in ("films", "scores")}
        return cls(**index, **flat)


class Widen(ValueError):
    """A batch has values the chosen dtype cannot hold exactly: write the kind again, wider."""


class ListWriter:
    """Appends decoded batches of lists to `{kind}.films.bin` / `{kind}.scores.bin` in `folder`."""

    def __init__(self, folder: Path, kind: str, films: str = "int32", scores: str = "int32") -> None:
        self.folder, self.kind = folder, kind
        self.dtypes = {"films": np.dtype(films), "scores": np.dtype(scores)}
        self._owners: list[np.ndarray] = []
        self._lengths: list[np.ndarray] = []
        self._files = {name: open(folder / f"{kind}.{name}.bin", "wb") for name in self.dtypes}
        self.entries = 0

    @property
    def rows(self) -> int:
        return sum(len(o) for o in self._owners)

    @property
    def nbytes(self) -> int:
        """What `finish` will hold (as `ListArrays.nbytes`)."""
        return self.entries * sum(d.itemsize for d in self.dtypes.values()) + self.rows * 20

    def add(self, owners: np.ndarray, lengths: np.ndarray, films: np.ndarray, scores: np.ndarray) -> None:
        if self.dtypes["films"] == np.int32 and films.size and (films.min() < 0 or films.max() > _I32.max):
            raise Widen("films")
        if self.dtypes["scores"] == np.int32:
            k = np.rint(scores * SCALE)
            if not (np.all(np.abs(k) <= _I32.max) and np.array_equal(k / SCALE, scores)):
                raise Widen("scores")  # not 5-place values (or too large): kept exactly as float64
            scores = k
        self._files["films"].write(films.astype(self.dtypes["films"]).tobytes())
        self._files["scores"].write(scores.astype(self.dtypes["scores"]).tobytes())
        self._owners.append(np.asarray(owners, dtype=np.int64))
        self._lengths.append(np.asarray(lengths, dtype=np.int32))
        self.entries += len(films)

    def close(self) -> None:
        for f in self._files.values():
            f.close()

    def finish(self) -> ListArrays:
        """Sort the owners (the lists stay where they were written) and write the index."""
        self.close()
        owners = np.concatenate(self._owners) if self._owners else np.zeros(0, np.int64)
        lengths = np.concatenate(self._lengths) if self._lengths else np.zeros(0, np.int32)
        starts = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])[:-1]
        order = np.argsort(owners, kind="stable")
        for name, values in (("owners", owners[order]), ("starts", starts[order].astype(np.int64)),
                             ("lengths", lengths[order])):
            np.save(self.folder / f"{self.kind}.{name}.npy", values, allow_pickle=False)
        (self.folder / f"{self.kind}.json").write_text(json.dumps(
            {"entries": self.entries, **{name: dtype.name for name, dtype in self.dtypes.items()}}))
        return ListArrays.load(self.folder, self.kind)


def write_lists(folder: Path, kind: str, owners: np.ndarray, lengths: np.ndarray, films: np.ndarray,
                scores: np.ndarray) -> ListArrays:
    """ListArrays of lists already in memory (tests, tools), with the narrowest exact dtypes."""
    dtypes = {"films": "int32", "scores": "int32"}
    while True:
        writer = ListWriter(folder, kind, **dtypes)
        try:
            writer.add(owners, lengths, films, scores)
        except Widen as exc:
            writer.close()
            dtypes[str(exc)] = "int64" if str(exc) == "films" else "float64"
            continue
        return writer.finish()


class CompactLists:
    """Lists looked up by owner id in `ListArrays`.

    Per request only Python-level indexing of memoryviews over the arrays
    (memory-mapped or not): a memoryview item or slice costs a third to a
    fifth of numpy's scalar indexing and `.tolist()` (docs/serving.md).
    """

    def __init__(self, arrays: ListArrays) -> None:
        self.arrays = arrays
        self._owners = np.asarray(arrays.owners)
        self._starts = memoryview(np.asarray(arrays.starts))
        self._lengths = memoryview(np.asarray(arrays.lengths))
        self._films = memoryview(np.asarray(arrays.films))
        self._scores = memoryview(np.asarray(arrays.scores))
        self._scaled = arrays.scores.dtype == np.int32
        self._first = int(arrays.owners[0]) if len(arrays.owners) else 0
        self._rows: memoryview | None = None
        self._span = int(arrays.owners[-1]) - self._first + 1 if len(arrays.owners) else 0
        if 0 < self._span <= 4 * len(arrays.owners) + 1024:  # dense ids: a row table (4 bytes per id)
            rows = np.full(self._span, -1, dtype=np.int32)
            rows[arrays.owners - self._first] = np.arange(len(arrays.owners), dtype=np.int32)
            self._rows = memoryview(rows)

    def __len__(self) -> int:
        return len(self._owners)

    def row(self, owner: int) -> int:
        """Row of `owner`, -1 when it has no list."""
        if self._rows is not None:
            i = owner - self._first
            return self._rows[i] if 0 <= i < self._span else -1
        i = int(np.searchsorted(self._owners, owner))
        return i if i < len(self._owners) and self._owners[i] == owner else -1

    def get(self, owner: int, n: int) -> Ranked | None:
        """The first `n` entries of `owner`'s list (None when it has none)."""
        row = self.row(owner)
        if row < 0:
            return None
        start = self._starts[row]
        end = start + min(self._lengths[row], n)
        scores = self._scores[start:end].tolist()
        return self._films[start:end].tolist(), list(map(_unscale, scores)) if self._scaled else scores


class HotLists:
    """An LRU of raw list values of the users asked most recently, bounded in bytes.

    For a version past the memory budget: a hit saves the `GET`, a miss is
    read from Redis with the request's other reads and remembered. A user
    without a list is remembered too (as an empty value).
    """

    ENTRY_OVERHEAD = 120  # bytes of dict entry, key and bytes object beyond the value itself

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max(0, max_bytes)
        self.nbytes = 0
        self._values: collections.OrderedDict[int, bytes] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._values)

    def raw(self, owner: int) -> bytes | None:
        """The cached value (b"" = no list), None when it must be read from Redis."""
        value = self._values.get(owner)
        if value is not None:
            self._values.move_to_end(owner)
        return value

    def remember(self, owner: int, raw: bytes | None) -> None:
        if not self.max_bytes:
            return
        value = raw or b""
        old = self._values.pop(owner, None)
        if old is not None:
            self.nbytes -= len(old) + self.ENTRY_OVERHEAD
        self._values[owner] = value
        self.nbytes += len(value) + self.ENTRY_OVERHEAD
        while self.nbytes > self.max_bytes and self._values:
            _, dropped = self._values.popitem(last=False)
            self.nbytes -= len(dropped) + self.ENTRY_OVERHEAD


class VersionLists:
    """How one version's lists are served in this process.

    `users` / `similar` are set (once, by the model cache's background load)
    when the compacted arrays are ready; until then, and for a kind past the
    memory budget, lists are read from Redis, users through `hot`.
    """

    def __init__(self, hot_bytes: int = 0) -> None:
        self.users: CompactLists | None = None
        self.similar: CompactLists | None = None
        self.hot = HotLists(hot_bytes)
        self.folder: Path | None = None
        self.scheduled = False  # a background load was started (and has not failed)
        self.retry_at = 0.0  # monotonic time before which a failed load is not tried again

    @property
    def nbytes(self) -> int:
        """Memory the compacted lists take (mapped), plus the hot users' cache."""
        return sum(lists.arrays.nbytes for lists in (self.users, self.similar) if lists is not None) + self.hot.nbytes

    def loaded(self, folder: Path, arrays: dict[str, ListArrays], hot_bytes: int) -> None:
        """Serve from `arrays` from now on (the hot cache is emptied when users are in memory)."""
        self.folder = folder
        if "similar" in arrays:
            self.similar = CompactLists(arrays["similar"])
        if "users" in arrays:
            self.users = CompactLists(arrays["users"])
            self.hot = HotLists(0)
        else:
            self.hot.max_bytes = max(0, hot_bytes)


def compact(owners: np.ndarray, lengths: np.ndarray, films: np.ndarray, scores: np.ndarray) -> ListArrays:
    """ListArrays sorted by owner, with the narrowest exact dtypes."""
    order = np.argsort(owners, kind="stable")
    starts = np.concatenate([[0], np.cumsum(lengths)])[:-1]
    lengths = lengths[order]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    take = np.repeat(starts[order] - offsets[:-1], lengths) + np.arange(offsets[-1])
    films, scores = films[take], scores[take]
    k = np.rint(scores * SCALE)
    if np.all(np.abs(k) <= _I32.max) and np.array_equal(k / SCALE, scores):
        stored_scores = k.astype(np.int32)
    else:
        stored_scores = scores  # not 5-place values (or too large): kept exactly as float64
    narrow = films.size == 0 or (films.min() >= 0 and films.max() <= _I32.max)
    return ListArrays(owners[order].astype(np.int64), offsets, films.astype(np.int32 if narrow else np.int64),
                      stored_scores)


class OverBudget(RuntimeError):
    """The lists of a version need more memory than allowed."""


def _batches(keys: Iterator[bytes], size: int) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    for key in keys:
        batch.append(key)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class Stopped(RuntimeError):
    """The process is stopping: a build in progress is abandoned."""


def read_lists(conn: redis.Redis, pattern: str, folder: Path, kind: str, max_bytes: int,
               stopping: Callable[[], bool] = lambda: False) -> ListArrays:
    """Every `recs:{v}:{kind}:{owner}` list matching `pattern`, written compacted into `folder`.

    Keys are read as the SCAN finds them (never all held at once: 10M keys
    would be ~750 MB of Python bytes). Raises OverBudget as soon as what was
    written passes `max_bytes`, Stopped when `stopping()` turns true.
    """
    dtypes = {"films": "int32", "scores": "int32"}
    while True:
        writer = ListWriter(folder, kind, **dtypes)
        try:
            for batch in _batches(conn.scan_iter(match=pattern, count=SCAN_COUNT), MGET_BATCH):
                raw = conn.mget(batch)
                present = [i for i, value in enumerate(raw) if value]  # a key that vanished since the SCAN: no list
                order, lengths, films, scores = decode_values([raw[i] for i in present])
                owners = np.array([int(batch[i].rsplit(b":", 1)[1]) for i in present], dtype=np.int64)
                writer.add(owners[order], lengths, films, scores)
                if stopping():
                    raise Stopped(f"{pattern}: stopped after {writer.rows:,} lists")
                if writer.nbytes > max_bytes:
                    raise OverBudget(f"{pattern}: past {max_bytes / 2**20:.0f} MiB after {writer.rows:,} lists")
        except Widen as exc:
            writer.close()
            dtypes[str(exc)] = "int64" if str(exc) == "films" else "float64"
            log.info("%s: %s do not fit int32 exactly; reading again with %s", pattern, exc, dtypes[str(exc)])
            continue
        except BaseException:
            writer.close()
            raise
        return writer.finish()


def decode_raw(raw: bytes) -> Ranked | None:
    """A `HotLists` value as a list (None for a user known to have none)."""
    return redis_keys.decode_ranked(raw) if raw else None

