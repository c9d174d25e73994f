"""One version's ranked lists (per user, or similar films per film) in a compact in-process form.

The web answers warm users from these arrays instead of a Redis `GET` per
request. Redis stays the source of truth: the arrays are read from the
version's keys once (`read_lists`) and a published version never changes, so
an answer from them is the answer the key gives.

Layout (CSR): `owners` (sorted user or film ids), `offsets` (row starts),
`films` and `scores` (all rows end to end). Scores are published rounded to 5
decimal places (`encode_ranked_rows`), so they are stored as the integers
`k = score * 1e5` in int32 and read back as `k / 1e5`: the nearest double to
the 5-place decimal, which is exactly the double Redis holds (checked for the
whole version when it is read; a version whose scores do not pass keeps them
as float64). 8 bytes per entry instead of ~12 in msgpack plus ~60 bytes of key
and Redis overhead per list.

`HotLists` is the fallback when a version does not fit the memory budget: an
LRU of raw values read from Redis for the users asked most recently.
"""
from __future__ import annotations

import collections
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import redis

from app.storage import redis_keys

log = logging.getLogger(__name__)

Ranked = tuple[list[int], list[float]]
SCALE = 1e5  # 5 decimal places, as published
_unscale = SCALE.__rtruediv__  # k -> k / 1e5, correctly rounded: the double Redis holds (~1 us less than numpy's)
FIELDS = ("owners", "offsets", "films", "scores")
MGET_BATCH = 5_000
SCAN_COUNT = 10_000
_I32 = np.iinfo(np.int32)
# Ids of a list are written with one fixed width per block (publish.encode_ranked_rows).
_ID_WIDTHS = {0xCD: 2, 0xCE: 4, 0xCF: 8}


@dataclass(frozen=True)
class ListArrays:
    """The arrays of one kind of list of one version (see the module docstring)."""

    owners: np.ndarray
    offsets: np.ndarray
    films: np.ndarray
    scores: np.ndarray

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, name).nbytes for name in FIELDS)

    def save(self, folder: Path, kind: str) -> None:
        for name in FIELDS:
            np.save(folder / f"{kind}.{name}.npy", getattr(self, name), allow_pickle=False)

    @classmethod
    def load(cls, folder: Path, kind: str) -> "ListArrays":
        """Memory-mapped, read-only: every process of the host shares the same pages."""
        return cls(*(np.load(folder / f"{kind}.{name}.npy", mmap_mode="r", allow_pickle=False) for name in FIELDS))


class CompactLists:
    """Lists looked up by owner id in `ListArrays`.

    Per request only Python-level indexing of memoryviews over the arrays
    (memory-mapped or not): a memoryview item or slice costs a third to a
    fifth of numpy's scalar indexing and `.tolist()` (docs/serving.md).
    """

    def __init__(self, arrays: ListArrays) -> None:
        self.arrays = arrays
        self._owners = np.asarray(arrays.owners)
        self._offsets = memoryview(np.asarray(arrays.offsets))
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
        start, end = self._offsets[row], self._offsets[row + 1]
        if end - start > n:
            end = start + n
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
        self.scheduled = False  # a background load was started

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


def _fixed_layout(length: int, width: int) -> tuple[int, np.dtype] | None:
    """(entries, record dtype) of a `length`-byte value from the block encoder with ids of `width` bytes."""
    for header in (1, 3):
        n, rest = divmod(length - 1 - 2 * header, 10 + width)
        if rest or n < 0 or (header == 1) != (n < 16):
            continue
        id_type = {2: ">u2", 4: ">u4", 8: ">u8"}[width]
        return n, np.dtype([
            ("outer", "u1"), ("ids_header", "u1", (header,)), ("ids", [("m", "u1"), ("v", id_type)], (n,)),
            ("scores_header", "u1", (header,)), ("scores", [("m", "u1"), ("v", ">f8")], (n,)),
        ])
    return None


def _header(n: int) -> np.ndarray:
    return np.frombuffer(bytes([0x90 | n]) if n < 16 else b"\xdc" + n.to_bytes(2, "big"), dtype="u1")


def _decode_fixed(values: list[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Equally long values decoded at once when they all have one block-encoder layout, else None."""
    length = len(values[0])
    for marker, width in _ID_WIDTHS.items():
        layout = _fixed_layout(length, width)
        if layout is None:
            continue
        n, record = layout
        block = np.frombuffer(b"".join(values), dtype=record)
        header = _header(n)
        ok = (
            (block["outer"] == 0x92).all()
            and (block["ids_header"] == header).all() and (block["scores_header"] == header).all()
            and (block["ids"]["m"] == marker).all() and (block["scores"]["m"] == 0xCB).all()
        )
        if ok:
            return np.full(len(values), n, dtype=np.int64), block["ids"]["v"].astype(np.int64).ravel(), \
                block["scores"]["v"].astype(np.float64).ravel()
    return None


def decode_values(values: list[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(order, entries per value, film ids end to end, scores end to end) of ranked-list values;
    `order` gives the input position of each decoded value (they come grouped by byte length).

    Values from the publisher's block encoder are parsed as numpy records, a
    group of equally long values at a time (~100x faster than msgpack per
    value); anything else (Python-encoded lists) goes through msgpack.
    """
    by_size: dict[int, list[int]] = collections.defaultdict(list)
    for i, value in enumerate(values):
        by_size[len(value)].append(i)
    order: list[np.ndarray] = []
    lengths: list[np.ndarray] = []
    films: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    for rows in by_size.values():
        fixed = _decode_fixed([values[i] for i in rows])
        if fixed is None:
            decoded = [redis_keys.decode_ranked(values[i]) for i in rows]
            fixed = (np.array([len(ids) for ids, _ in decoded], dtype=np.int64),
                     np.array([f for ids, _ in decoded for f in ids], dtype=np.int64),
                     np.array([s for _, row in decoded for s in row], dtype=np.float64))
        order.append(np.asarray(rows, dtype=np.int64))
        lengths.append(fixed[0])
        films.append(fixed[1])
        scores.append(fixed[2])
    if not order:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return np.concatenate(order), np.concatenate(lengths), np.concatenate(films), np.concatenate(scores)


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


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def read_lists(conn: redis.Redis, pattern: str, max_bytes: int) -> ListArrays:
    """Every `recs:{v}:{kind}:{owner}` list matching `pattern`, compacted.

    Raises OverBudget as soon as the lists read so far (projected over all
    keys) would pass `max_bytes`, before reading the rest.
    """
    keys = list(conn.scan_iter(match=pattern, count=SCAN_COUNT))
    owner_parts: list[np.ndarray] = []
    length_parts: list[np.ndarray] = []
    film_parts: list[np.ndarray] = []
    score_parts: list[np.ndarray] = []
    entries = 0
    for batch in _chunks(keys, MGET_BATCH):
        raw = conn.mget(batch)
        present = [i for i, value in enumerate(raw) if value]  # a key that vanished since the SCAN: no list
        order, lengths, films, scores = decode_values([raw[i] for i in present])
        owners = np.array([int(batch[i].rsplit(b":", 1)[1]) for i in present], dtype=np.int64)
        owner_parts.append(owners[order])
        length_parts.append(lengths)
        film_parts.append(films)
        score_parts.append(scores)
        entries += len(films)
        read = sum(len(p) for p in owner_parts)
        projected = (entries * 8 + read * 16) * len(keys) / max(read, 1)  # as `ListArrays.nbytes`
        if projected > max_bytes:
            raise OverBudget(f"{pattern}: ~{projected / 2**20:.0f} MiB for {len(keys)} lists > {max_bytes / 2**20:.0f} MiB")
    if not owner_parts:
        return compact(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))
    return compact(np.concatenate(owner_parts), np.concatenate(length_parts), np.concatenate(film_parts),
                   np.concatenate(score_parts))


def iter_lists(arrays: ListArrays) -> Iterable[tuple[int, Ranked]]:
    """(owner, list) of every row (tests and tools)."""
    lists = CompactLists(arrays)
    for owner in arrays.owners.tolist():
        ranked = lists.get(owner, len(arrays.films))
        assert ranked is not None
        yield owner, ranked


def decode_raw(raw: bytes) -> Ranked | None:
    """A `HotLists` value as a list (None for a user known to have none)."""
    return redis_keys.decode_ranked(raw) if raw else None

