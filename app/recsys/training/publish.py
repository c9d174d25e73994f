"""Versioned publishing of recommendations to Redis (key layout: app.storage.redis_keys).

Every run writes under a fresh version; readers follow `recs:current`, which
is switched only after every key of the new version is written (one MULTI:
SET current + ZADD versions), so a reader never sees a half-published
version. The last `KEEP_VERSIONS` published versions (and whatever is
current) keep no TTL so `rollback` can re-point to them; older ones get
`OLD_VERSION_TTL_S` and are forgotten once gone.
"""
from __future__ import annotations

import json
import logging
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from typing import Callable, Iterable, Iterator, Mapping, TypeVar

import numpy as np
import redis

from app.experiments.store import protected_versions
from app.recsys.data.dataset import Dataset
from app.recsys.data.idmap import IdMap
from app.recsys.models.base import Recommender
from app.recsys.models.foldin import FactorModel, pack_factors
from app.recsys.models.popularity import PopularRecommender, TrendingRecommender
from app.recsys.progress import Progress, no_progress
from app.storage import redis_keys as keys
from app.storage import version_keys

log = logging.getLogger(__name__)

KEEP_VERSIONS = 3
OLD_VERSION_TTL_S = 2 * 24 * 3600
BATCH_KEYS = 5_000  # keys per round trip

# Switch to `version` only if it was fully published and still exists (atomic in Redis).
_ROLLBACK = """
if redis.call('ZSCORE', KEYS[2], ARGV[1]) and redis.call('EXISTS', KEYS[3]) == 1 then
    redis.call('SET', KEYS[1], ARGV[1])
    return 1
end
return 0
"""


@dataclass(frozen=True)
class ListSizes:
    """How long the published lists are, and how many owners are ranked per block."""

    recs: int = 100
    similar: int = 20
    popular: int = 100
    batch: int = 5_000


class PublishError(RuntimeError):
    """A version cannot be made current (unknown or already expired)."""


def new_version(now: datetime | None = None) -> str:
    """Sortable, unique version string like `20261128T061500Z-3fa9c1`."""
    now = now or datetime.now(timezone.utc)
    return f"{now.astimezone(timezone.utc):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def current_version(conn: redis.Redis) -> str | None:
    raw = conn.get(keys.CURRENT)
    return raw.decode() if raw else None


def read_meta(conn: redis.Redis, version: str) -> dict | None:
    raw = conn.get(keys.meta(version))
    return json.loads(raw) if raw else None


def _array_header(length: int) -> bytes:
    return bytes([0x90 | length]) if length < 16 else b"\xdc" + length.to_bytes(2, "big")


def encode_ranked_rows(film_ids: np.ndarray, scores: np.ndarray) -> list[bytes]:
    """`redis_keys.encode_ranked` for a whole (rows, n) block at once, -1 padding dropped.

    Same wire format (msgpack `[[ids], [scores]]`, scores rounded to 5 places,
    read back by `decode_ranked`), but built with numpy record arrays: per-row
    Python encoding caps publishing at ~25k users/s. Ids are written with one
    fixed width per block (uint16/32/64), which msgpack readers accept.
    """
    film_ids = np.asarray(film_ids, dtype=np.int64)
    scores = np.round(np.asarray(scores, dtype=np.float64), 5)
    if film_ids.shape != scores.shape or film_ids.ndim != 2:
        raise ValueError(f"film_ids {film_ids.shape} and scores {scores.shape} must be the same 2-d shape")
    valid = film_ids >= 0
    lengths = valid.sum(axis=1)
    if np.any(valid[:, 1:] & ~valid[:, :-1]):
        raise ValueError("padding (-1) must come after the real entries of each row")
    top = int(film_ids.max(initial=0))
    marker, id_type = (0xCD, ">u2") if top < 1 << 16 else (0xCE, ">u4") if top < 1 << 32 else (0xCF, ">u8")
    out: list[bytes | None] = [None] * len(film_ids)
    for length in np.unique(lengths).tolist():
        rows = np.flatnonzero(lengths == length)
        header = _array_header(length)
        record = np.dtype([
            ("outer", "u1"), ("ids_header", "u1", (len(header),)), ("ids", [("m", "u1"), ("v", id_type)], (length,)),
            ("scores_header", "u1", (len(header),)), ("scores", [("m", "u1"), ("v", ">f8")], (length,)),
        ])
        block = np.empty(len(rows), dtype=record)
        block["outer"] = 0x92
        block["ids_header"] = block["scores_header"] = np.frombuffer(header, dtype="u1")
        block["ids"]["m"], block["scores"]["m"] = marker, 0xCB
        block["ids"]["v"] = film_ids[rows, :length]
        block["scores"]["v"] = scores[rows, :length]
        raw, size = block.tobytes(), record.itemsize
        for i, row in enumerate(rows.tolist()):
            out[row] = raw[i * size : (i + 1) * size]
    return out  # type: ignore[return-value]


def write_ranked(
    conn: redis.Redis,
    key: Callable[[int], str],
    owner_ids: np.ndarray,
    film_ids: np.ndarray,
    scores: np.ndarray,
    batch: int = BATCH_KEYS,
) -> int:
    """Write one ranked list per owner (row); -1 entries are padding and dropped.

    One MSET per `batch` keys: a single round trip and a single command to
    pack, which (with the block encoder) makes 100k users a second-scale job.
    """
    written = 0
    owners = owner_ids.tolist()
    for start in range(0, len(owners), batch):
        stop = min(start + batch, len(owners))
        values = encode_ranked_rows(film_ids[start:stop], scores[start:stop])
        mapping = dict(zip(map(key, owners[start:stop]), values))
        if mapping:
            conn.mset(mapping)
        written += len(mapping)
    return written


def write_ranked_batches(
    conn: redis.Redis,
    key: Callable[[int], str],
    batches: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]],
    total: int,
    stage: str,
    progress: Progress = no_progress,
) -> tuple[int, float]:
    """`write_ranked` over a stream of (owner ids, film ids, scores) blocks, with progress.

    Returns (lists written, seconds spent writing): producing the blocks (the
    model's top-n) is not counted, so the two costs can be told apart.
    """
    written, write_s = 0, 0.0
    progress(stage, 0, total)
    for owner_ids, film_ids, scores in batches:
        started = time.perf_counter()
        written += write_ranked(conn, key, owner_ids, film_ids, scores)
        write_s += time.perf_counter() - started
        progress(stage, written, total)
    return written, round(write_s, 3)


T = TypeVar("T")
_END = object()


def prefetched(blocks: Iterator[T]) -> Iterator[T]:
    """`blocks`, each one computed in a helper thread while the caller handles the previous one.

    For the publish: the model's top-n of the next block (implicit's threads;
    BLAS and its selection run without the GIL) overlaps the Redis writes of
    this one. An error in `blocks` is raised here; stopping early waits for
    the block in flight.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prefetch") as pool:
        pending = pool.submit(next, blocks, _END)
        while (block := pending.result()) is not _END:
            pending = pool.submit(next, blocks, _END)
            yield block  # type: ignore[misc]


def write_titles(conn: redis.Redis, titles: Mapping[int, str], batch: int = BATCH_KEYS) -> int:
    """Film titles hash (not versioned: titles do not depend on the model)."""
    items = list(titles.items())
    for start in range(0, len(items), batch):
        conn.hset(keys.FILM_TITLES, mapping=dict(items[start : start + batch]))
    return len(items)


def activate(conn: redis.Redis, version: str, meta: Mapping[str, object], switch: bool = True) -> None:
    """Write the meta and register `version` in one transaction, making it current unless
    `switch` is False (published for an experiment or a later rollback); then age old versions.

    Call only after every other key of the version is written.
    """
    pipe = conn.pipeline(transaction=True)
    pipe.set(keys.meta(version), json.dumps(dict(meta), sort_keys=True))
    pipe.zadd(keys.VERSIONS, {version: time.time()})
    if switch:
        pipe.set(keys.CURRENT, version)
    pipe.execute()
    if switch:
        log.info("recs:current -> %s", version)
    else:
        log.info("published %s without serving it (recs:current unchanged)", version)
    try:
        expire_old_versions(conn)
    except redis.RedisError:  # housekeeping only: the switch is done, the next publish retries it
        log.exception("could not age old versions after publishing %s", version)


def publish_lists(conn: redis.Redis, items: IdMap, popular: PopularRecommender, trending: TrendingRecommender,
                  n: int, titles: Mapping[int, str]) -> None:
    """The latest run's popular and trending lists (top `n`, not versioned) and the film titles.

    Written by every run that has data, whatever its gate decides: readers
    fall back to these lists, so nobody gets an empty one while the store
    holds interactions, and they stay fresh while the served model does not change.
    """
    write_titles(conn, titles)
    conn.mset({keys.POPULAR_LATEST: encode_top(popular, items, n), keys.TRENDING_LATEST: encode_top(trending, items, n)})


def publish_version(
    conn: redis.Redis,
    version: str,
    dataset: Dataset,
    model: Recommender,
    popular: PopularRecommender,
    meta: Mapping[str, object],
    sizes: ListSizes,
    progress: Progress = no_progress,
    switch: bool = True,
    extra: Mapping[str, bytes] | None = None,
) -> dict[str, float]:
    """Every key of a version from a model fitted on `dataset`, then the meta + pointer switch last
    (without the switch when `switch` is False).

    Per user the top `sizes.recs` (seen films left out), per film the top
    `sizes.similar` similar films, the popular list and the fold-in factors
    (when the model has item factors) and `extra` keys of the version (e.g. `recs:{v}:ranking`, a
    two-level model's request-time bundle); titles come with `publish_lists`. A failure before the switch
    deletes what was written (nothing would read or expire it). Returns the
    seconds spent in Redis writes of the user and similar lists, apart from
    the model's top-n (computed for the next block while one is written).
    """
    n_users, n_items = len(dataset.users), len(dataset.items)

    def user_blocks() -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        for start in range(0, n_users, sizes.batch):
            idx = np.arange(start, min(start + sizes.batch, n_users))
            ids, scores = model.recommend(idx, sizes.recs, seen=dataset.matrix)
            yield dataset.users.to_external(idx), dataset.items.to_external(ids), scores

    def similar_blocks() -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        for start in range(0, n_items, sizes.batch):
            idx = np.arange(start, min(start + sizes.batch, n_items))
            ids, scores = model.similar_items(idx, sizes.similar)
            yield dataset.items.to_external(idx), dataset.items.to_external(ids), scores

    timings: dict[str, float] = {}
    try:
        _, timings["publish_users_write"] = write_ranked_batches(
            conn, partial(keys.user_recs, version), prefetched(user_blocks()), n_users, "publish users", progress)
        _, timings["publish_similar_write"] = write_ranked_batches(
            conn, partial(keys.similar, version), prefetched(similar_blocks()), n_items, "publish similar", progress)
        conn.set(keys.popular(version), encode_top(popular, dataset.items, sizes.popular))
        if isinstance(model, FactorModel):
            conn.set(keys.factors(version), pack_factors(model))
        if extra:
            conn.mset(dict(extra))
        activate(conn, version, meta, switch)
    except Exception:
        _discard_partial(conn, version)
        raise
    return timings


def encode_top(model: PopularRecommender | TrendingRecommender, items: IdMap, n: int) -> bytes:
    """The model's top-n for anybody, as a ranked list of film ids."""
    ids, scores = model.top(n)
    keep = ids >= 0
    return keys.encode_ranked(items.to_external(ids[keep]).tolist(), scores[keep].tolist())


def _discard_partial(conn: redis.Redis, version: str) -> None:
    """Keys of a publish that failed before the switch: nothing reads or expires them, so delete them."""
    try:
        deleted = discard(conn, version)
        log.warning("[%s] publish failed: deleted its %d keys; the served version is unchanged", version, deleted)
    except PublishError:
        log.warning("[%s] publish failed after the switch: the version stays served", version)
    except Exception:  # Redis may be what failed; the publish error matters more
        log.exception("[%s] publish failed and its keys could not be deleted", version)


def discard(conn: redis.Redis, version: str) -> int:
    """Delete the keys of a version that never went live (a publish that failed midway)."""
    if current_version(conn) == version:
        raise PublishError(f"version {version!r} is being served; roll back before discarding it")
    return version_keys.each_key(conn, version, lambda pipe, key: pipe.unlink(key))


def expire_old_versions(
    conn: redis.Redis, keep: int = KEEP_VERSIONS, ttl_s: int = OLD_VERSION_TTL_S
) -> list[str]:
    """Give a TTL to versions older than the newest `keep`, never to the current one nor to
    the versions of the running experiment (`experiments.store.protected_versions`).

    Versions whose keys are already gone are dropped from the registry.
    Returns the versions that got a TTL in this call. An experiment starting
    meanwhile mirrors itself before it persists its versions' keys, so the
    protection is read again after each version: if the version became
    protected, its keys are persisted again (whichever of the two ran last).
    Ending an experiment calls this to give its versions their TTL back.
    """
    current = current_version(conn)
    expired = []
    for raw in conn.zrevrange(keys.VERSIONS, keep, -1):
        version = raw.decode()
        if version == current or version in protected_versions(conn):
            continue
        ttl = conn.ttl(keys.meta(version))
        if ttl == -2:  # meta gone: the version has expired
            conn.zrem(keys.VERSIONS, version)
        elif ttl == -1:
            n = version_keys.expire(conn, version, ttl_s)
            if version in protected_versions(conn):
                version_keys.persist(conn, version)
                log.info("version %s joined an experiment while it was being aged: kept", version)
                continue
            log.info("version %s: %d keys expire in %ds", version, n, ttl_s)
            expired.append(version)
    return expired


def published_versions(conn: redis.Redis) -> list[tuple[str, float]]:
    """Published versions still registered, newest first, with their publish time."""
    return [(v.decode(), score) for v, score in conn.zrevrange(keys.VERSIONS, 0, -1, withscores=True)]


def rollback(conn: redis.Redis, version: str) -> None:
    """Re-point `recs:current` to a previously published version that still exists.

    Its keys lose any TTL first, so the version cannot expire while served.
    """
    if conn.zscore(keys.VERSIONS, version) is None:
        raise PublishError(f"version {version!r} was never published here")
    version_keys.persist(conn, version)
    switched = conn.eval(_ROLLBACK, 3, keys.CURRENT, keys.VERSIONS, keys.meta(version), version)
    if not switched:
        raise PublishError(f"version {version!r} has expired; pick one of `cinerec models`")
    log.info("rolled back: recs:current -> %s", version)
