"""Load training data from ClickHouse in columnar numpy form.

Millions of rows per retrain: the query returns numpy columns (a `use_numpy`
client, clickhouse-driver's numpy extra) and the event type is turned
into its int8 code on the server, so no per-row Python object is built.
Columns travel in their stored width (UInt64 ids are viewed as int64, not
converted). A re-delivered Kafka batch counts once: the rows carry a 64-bit
hash of the ReplacingMergeTree key and repeats are dropped here. `FINAL`
would do the same on the server, but on 18.16 it merges every part in one
thread: 4.2 s of a 5M-row load instead of 2.3 s for this (argMax ... GROUP BY
event_id exceeds the server's per-query memory limit at that size).
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from app.recsys.data.dataset import Interactions
from app.recsys.data.idmap import IdMap
from app.recsys.progress import Progress, no_progress
from app.schema import EVENT_TYPES, FILM_EVENT_TYPES
from app.settings import Settings
from app.storage.clickhouse import client

log = logging.getLogger(__name__)

_TYPE_ARRAY = "[" + ", ".join(f"'{t}'" for t in EVENT_TYPES) + "]"
_FILM_TYPES = "(" + ", ".join(f"'{t}'" for t in EVENT_TYPES if t in FILM_EVENT_TYPES) + ")"


@dataclass(frozen=True)
class Films:
    """The catalog: `film_id[i]` is called `title[i]` and has genres `genres[i]`."""

    film_id: np.ndarray
    title: list[str]
    genres: list[list[str]] = field(default_factory=list)

    def as_mapping(self) -> dict[int, str]:
        return dict(zip(self.film_id.tolist(), self.title))

    def genre_matrix(self, items: IdMap) -> tuple[sp.csr_matrix, list[str]]:
        """(items x genres, genre names): row i = the genres of film `items.external[i]`, summing to 1
        (a film in three genres is a third of each); films without genres or not in the catalog: empty rows."""
        names = sorted({g for gs in self.genres for g in gs})
        column = {g: j for j, g in enumerate(names)}
        index = items.to_index(self.film_id) if len(self.film_id) else np.zeros(0, dtype=np.int64)
        rows, cols, values = [], [], []
        for row, gs in zip(index.tolist(), self.genres):
            if row >= 0 and gs:
                unique = sorted(set(gs))
                rows += [row] * len(unique)
                cols += [column[g] for g in unique]
                values += [1.0 / len(unique)] * len(unique)
        matrix = sp.csr_matrix((np.asarray(values, dtype=np.float32), (rows, cols)), shape=(len(items), len(names)))
        return matrix, names


def window_conditions(since: float | None, until: float | None) -> tuple[list[str], dict[str, int]]:
    """WHERE conditions (and parameters) of the film events in `[since, until)`, epoch seconds.

    Shared by the driver load below and the Spark trainer's per-slice queries,
    so both backends train on exactly the same rows. `ts` is whole seconds, so
    rounding `since` and `until` up keeps the half-open interval exact.
    """
    where = [f"event_type IN {_FILM_TYPES}", "film_id != 0"]
    params: dict[str, int] = {}
    if since is not None:
        where.append("ts >= toDateTime(%(since)s)")
        params["since"] = math.ceil(since)
    if until is not None:
        where.append("ts < toDateTime(%(until)s)")
        params["until"] = math.ceil(until)
    return where, params


def interactions_query(database: str, since: float | None, until: float | None) -> tuple[str, dict]:
    """SQL (and parameters) of the training window `[since, until)`, epoch seconds."""
    where, params = window_conditions(since, until)
    query = f"""
        SELECT
            user_id,
            film_id,
            toInt8(indexOf({_TYPE_ARRAY}, event_type) - 1),
            toUInt32(ts),
            watch_seconds,
            duration_seconds,
            rating,
            cityHash64(user_id, ts, event_id)
        FROM {database}.interactions
        WHERE {' AND '.join(where)}
    """
    return query, params


def one_per_key(keys: np.ndarray) -> np.ndarray | None:
    """Positions keeping the first row of each key (in read order), or None when no key repeats.

    The keys are the hash of the table's sorting key (user_id, ts, event_id),
    what `FINAL` deduplicates on; a 64-bit collision among 5M rows has odds of
    about 1e-6 and would drop one event. Repeats carry the same event (a
    re-delivered batch), so which copy is kept does not matter.
    """
    ordered = np.sort(keys)
    if not np.any(ordered[1:] == ordered[:-1]):  # the usual case: nothing re-delivered
        return None
    _, first = np.unique(keys, return_index=True)
    first.sort()
    return first


def load_interactions(
    settings: Settings,
    since: float | None = None,
    until: float | None = None,
    progress: Progress = no_progress,
) -> Interactions:
    """The deduplicated film events of the window, as columnar `Interactions`."""
    database = settings.clickhouse_database
    query, params = interactions_query(database, since, until)
    started = time.perf_counter()
    conn = client(settings, numpy=True)
    try:
        running = conn.execute_with_progress(query, params, columnar=True)
        for rows_read, total_rows in running:
            progress("load", int(rows_read), int(total_rows) or None)
        result = running.get_result()
    finally:
        conn.disconnect()
    names = ("user_id", "film_id", "event_type", "ts", "watch_seconds", "duration_seconds", "rating")
    dtypes = (np.int64, np.int64, np.int8, np.float64, np.float32, np.float32, np.float32)
    if result:
        *values, keys = result
        keep = one_per_key(np.asarray(keys))
        columns = {name: _column(col, dtype, keep) for name, col, dtype in zip(names, values, dtypes)}
    else:  # an empty result has no columns at all
        columns = {name: np.empty(0, dtype=dtype) for name, dtype in zip(names, dtypes)}
    interactions = Interactions.from_columns(columns)
    progress("load", len(interactions), len(interactions))  # rows read counts rows before dedup/WHERE
    elapsed = time.perf_counter() - started
    log.info(
        "loaded %d interactions from %s in %.2fs (%.0f rows/s)",
        len(interactions), database, elapsed, len(interactions) / max(elapsed, 1e-9),
    )
    return interactions


def _column(values: np.ndarray, dtype: type, keep: np.ndarray | None) -> np.ndarray:
    """One loaded column as `dtype`, repeats dropped; UInt64 ids (< 2^63) are reinterpreted, not copied."""
    arr = np.asarray(values)
    if keep is not None:
        arr = arr[keep]
    if arr.dtype == np.uint64 and dtype is np.int64:
        return arr.view(np.int64)
    return arr.astype(dtype, copy=False)


def load_films(settings: Settings) -> Films:
    """Latest title and genres of every catalog film (films is a ReplacingMergeTree on updated_at)."""
    conn = client(settings)
    try:
        rows = conn.execute(
            f"SELECT film_id, argMax(title, updated_at), argMax(genres, updated_at) "
            f"FROM {settings.clickhouse_database}.films GROUP BY film_id ORDER BY film_id",
            columnar=True,
        )
    finally:
        conn.disconnect()
    if not rows:
        return Films(np.empty(0, dtype=np.int64), [], [])
    film_ids, titles, genres = rows
    return Films(np.asarray(film_ids, dtype=np.int64), list(titles), [list(g) for g in genres])


def newest_event_ts(settings: Settings) -> float | None:
    """Epoch seconds of the newest stored event; None when there is none."""
    conn = client(settings)
    try:
        (newest,), = conn.execute(f"SELECT toUInt32(max(ts)) FROM {settings.clickhouse_database}.interactions")
    finally:
        conn.disconnect()
    return float(newest) if newest else None
