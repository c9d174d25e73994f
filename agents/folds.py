"""The statistics folds: per-event reference (`apply_user`, `apply_film`) and the batch folds the
agents run (`fold_users`, `fold_films`), which give the same records, vectorised.

Records are plain dicts (Faust table values, JSON in the changelogs).
Sums are kept as integers (watch time in milliseconds, ratings in
thousandths): integer addition does not depend on its order, so a group-by
over a whole batch gives bit for bit the record the per-event fold gives
(tests/agents/test_folds.py checks it on arbitrary batches), which float sums
would not. Readers get seconds and rating sums from `summary`.

Exactly once per source position: every record keeps, per source partition,
the last source offset applied to it (`"src": {"p": o}`), in the same value
as the stats, so one changelog write holds both. An event at or below its
record's mark was applied before (a re-delivered batch) and is skipped
(docs/ingestion.md explains why this is exact).
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Callable, Iterable

import numpy as np

from app.event_columns import TYPE_CODE
from app.events import Event
from app.schema import NO_RATING, WATCH_EVENT_TYPES
from app.storage.redis_keys import RECENT_MAX
from agents.batches import StatsBatch, film_partition

# Record fields for the fold itself (position in the current film, source marks, write time), not readers.
BOOKKEEPING = frozenset({"cur_film", "cur_pos", "src", "at"})
_PLAY, _COMPLETE, _RATE = TYPE_CODE["play"], TYPE_CODE["complete"], TYPE_CODE["rate"]
_WATCH_CODES = np.array(sorted(TYPE_CODE[name] for name in WATCH_EVENT_TYPES), dtype=np.int8)


def milli(value: float) -> int:
    """Thousandths (ms of watch time, thousandths of a rating point), rounded half to even
    like numpy's `rint`, so both folds agree."""
    return round(value * 1000)


def _milli_array(values: np.ndarray) -> np.ndarray:
    return np.rint(values * 1000).astype(np.int64)


def new_user_stats() -> dict[str, Any]:
    return {"events": 0, "watch_ms": 0, "completed": 0, "rating_milli": 0, "ratings": 0,
            "last_seen": 0.0, "recent": [], "cur_film": 0, "cur_pos": 0}


def apply_user(stats: dict[str, Any] | None, event: Event) -> dict[str, Any]:
    """`stats` updated by one event (a new dict): the reference the batch fold must equal.

    Watch time: `watch_seconds` is the position reached, so time watched is
    the increase of position within the film being watched (a `play` starts
    it at 0). Recent films: most recent first, each film once, capped.
    """
    s = dict(stats) if stats else new_user_stats()
    s["events"] += 1
    s["last_seen"] = max(s["last_seen"], event.ts)
    if event.event_type in WATCH_EVENT_TYPES:
        position = milli(event.watch_seconds)
        if event.event_type == "play" or event.film_id != s["cur_film"]:
            s["cur_film"], s["cur_pos"] = event.film_id, 0
        if position > s["cur_pos"]:
            s["watch_ms"] += position - s["cur_pos"]
            s["cur_pos"] = position
        if not s["recent"] or s["recent"][0] != event.film_id:
            s["recent"] = [event.film_id, *(f for f in s["recent"] if f != event.film_id)][:RECENT_MAX]
    if event.event_type == "complete":
        s["completed"] += 1
    if event.event_type == "rate" and event.rating != NO_RATING:
        s["rating_milli"] += milli(event.rating)
        s["ratings"] += 1
    return s


def new_film_stats() -> dict[str, Any]:
    return {"views": 0, "viewers": 0, "completes": 0, "rating_milli": 0, "ratings": 0}


def apply_film(stats: dict[str, Any] | None, action: Event, new_viewer: bool) -> dict[str, Any]:
    """`stats` updated by one film action (play, complete, rate; a new dict): the reference."""
    s = dict(stats) if stats else new_film_stats()
    if action.event_type == "play":
        s["views"] += 1
        s["viewers"] += int(new_viewer)
    elif action.event_type == "complete":
        s["completes"] += 1
    elif action.event_type == "rate":
        s["rating_milli"] += milli(action.rating)
        s["ratings"] += 1
    return s


def summary(stats: dict[str, Any]) -> dict[str, Any]:
    """What readers see: counts, watch seconds, rating sum, average rating, completion rate."""
    out = {k: v for k, v in stats.items() if k not in BOOKKEEPING and k not in ("watch_ms", "rating_milli")}
    if "watch_ms" in stats:
        out["watch_seconds"] = stats["watch_ms"] / 1000
    out["rating_sum"] = stats["rating_milli"] / 1000
    out["avg_rating"] = out["rating_sum"] / stats["ratings"] if stats["ratings"] else None
    if "views" in stats:
        out["completion_rate"] = stats["completes"] / stats["views"] if stats["views"] else None
    return out


def current_format(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """A record written before sums became integers (float seconds and rating sums), converted."""
    if record is None or "rating_milli" in record:
        return record
    record = dict(record)
    record["rating_milli"] = milli(record.pop("rating_sum", 0.0))
    if "watch_seconds" in record:
        record["watch_ms"] = milli(record.pop("watch_seconds"))
        record["cur_pos"] = milli(record.get("cur_pos", 0.0))
    return record


def _groups(keys: np.ndarray) -> np.ndarray:
    """Start index of each run of equal values in `keys` (sorted or grouped)."""
    return np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1]))) if len(keys) else np.empty(0, np.int64)


def _sums(values: np.ndarray, starts: np.ndarray) -> list[int]:
    return np.add.reduceat(values, starts).tolist() if len(starts) else []


class _Keyed:
    """The distinct keys of a batch column (users or films), each row's index among them, their records."""

    def __init__(self, keys: np.ndarray, current: Callable[[int], dict[str, Any] | None]) -> None:
        self.ids, self.inverse = np.unique(keys, return_inverse=True)
        self.id_list = self.ids.tolist()
        self.records = [current_format(current(key)) for key in self.id_list]


def _by_partition(batch: StatsBatch) -> list[tuple[int, StatsBatch]]:
    partitions = np.unique(batch.partition).tolist()
    if len(partitions) == 1:
        return [(partitions[0], batch)]
    return [(p, batch[batch.partition == p]) for p in partitions]


def fold_users(
    current: Callable[[int], dict[str, Any] | None], batch: StatsBatch, now: float,
    on_recent: Callable[[int, dict[str, Any]], None] | None = None,
) -> dict[int, dict[str, Any]]:
    """New record of every user in `batch`, starting from `current(user_id)`: the per-event fold
    (`apply_user`, events in order) done as group-bys over the batch.

    Events at or below their record's mark are skipped (re-deliveries). Every
    user of the batch is written (stamped "at" = `now`, wall clock, for
    expiry), even one whose events were all skipped: that re-sends a value a
    crash may have kept from the changelog. `on_recent(user, record)` is
    called with the new record of each user whose recent list changed.

    A batch from several source partitions (never sent by the loader: user
    batches are per partition) is folded one partition after the other.
    """
    parts = _by_partition(batch)
    if len(parts) == 1:
        return _fold_users(current, parts[0][1], str(parts[0][0]), now, on_recent)
    out: dict[int, dict[str, Any]] = {}
    for partition, part in parts:
        out.update(_fold_users(lambda key: out[key] if key in out else current(key), part, str(partition), now,
                               on_recent))
    return out


def _fold_users(current, batch: StatsBatch, key: str, now: float, on_recent) -> dict[int, dict[str, Any]]:
    users = _Keyed(batch.user_id, current)
    records, count = users.records, len(users.id_list)
    marks = np.array([r["src"].get(key, -1) if r else -1 for r in records], dtype=np.int64)
    keep = batch.offset > marks[users.inverse]
    order = np.flatnonzero(keep)[np.argsort(users.inverse[keep], kind="stable")]  # by user, in offset order
    who = users.inverse[order]
    kind, film = batch.event_type[order], batch.film_id[order]
    starts = _groups(who)
    grouped = who[starts].tolist()
    events = np.diff(np.append(starts, len(order))).tolist()
    last_seen = np.maximum.reduceat(batch.ts[order], starts).tolist() if len(starts) else []
    last_offset = batch.offset[order][np.append(starts[1:], len(order)) - 1].tolist() if len(starts) else []
    completed = _sums((kind == _COMPLETE).astype(np.int64), starts)
    rated = (kind == _RATE) & (batch.rating[order] != NO_RATING)
    ratings = _sums(rated.astype(np.int64), starts)
    rating_milli = _sums(np.where(rated, _milli_array(batch.rating[order]), 0), starts)
    watched = _watch(records, who, kind, film, _milli_array(batch.watch_seconds[order]), count)

    out: dict[int, dict[str, Any]] = {}
    for j, user in enumerate(users.id_list):
        record = records[j]
        out[user] = dict(record) if record else new_user_stats()
        out[user]["src"] = dict(record["src"]) if record else {}
        out[user]["at"] = now
    for g, j in enumerate(grouped):
        s = out[users.id_list[j]]
        s["events"] += events[g]
        s["last_seen"] = max(s["last_seen"], last_seen[g])
        s["completed"] += completed[g]
        s["ratings"] += ratings[g]
        s["rating_milli"] += rating_milli[g]
        s["src"][key] = last_offset[g]
    for j, (gain, cur_film, cur_pos, films) in watched.items():
        user = users.id_list[j]
        s = out[user]
        s["watch_ms"] += gain
        s["cur_film"], s["cur_pos"] = cur_film, cur_pos
        recent = _recent(films, s["recent"])
        if recent != s["recent"]:
            s["recent"] = recent
            if on_recent is not None:
                on_recent(user, s)
    return out


def _watch(records: list, who: np.ndarray, kind: np.ndarray, film: np.ndarray, position: np.ndarray,
           count: int) -> dict[int, tuple[int, int, int, list[int]]]:
    """Per user index with watch events: (watch ms gained, film watched last, position in it,
    the films watched in order): `apply_user`'s watch rules over whole segments.

    A segment is a run of one user's watch events on one film not broken by a
    `play`; it starts at 0, or at the stored position when the user's first
    event continues the stored film. Position only rises: the segment's gain is
    max(start, highest position) - start, the sum of the per-event increases.
    """
    rows = np.flatnonzero(np.isin(kind, _WATCH_CODES))
    if not len(rows):
        return {}
    who, film, position, play = who[rows], film[rows], position[rows], kind[rows] == _PLAY
    stored_film = np.array([r["cur_film"] if r else 0 for r in records], dtype=np.int64)[who]
    stored_pos = np.array([r["cur_pos"] if r else 0 for r in records], dtype=np.int64)[who]
    first = np.concatenate(([True], who[1:] != who[:-1]))
    previous_film = np.where(first, stored_film, np.concatenate(([0], film[:-1])))
    starts = np.flatnonzero(play | (film != previous_film) | first)
    start_at = np.where(first & ~play & (film == stored_film), stored_pos, 0)[starts]
    final = np.maximum(np.maximum.reduceat(position, starts), start_at)
    gain = final - start_at
    segment_user = who[starts]
    user_starts = _groups(segment_user)
    gains = np.add.reduceat(gain, user_starts).tolist()
    last = np.append(user_starts[1:], len(starts)) - 1
    row_starts = np.flatnonzero(first).tolist() + [len(rows)]
    films = film.tolist()
    return {j: (g, f, p, films[a:b]) for j, g, f, p, a, b in zip(
        segment_user[user_starts].tolist(), gains, film[starts[last]].tolist(), final[last].tolist(),
        row_starts[:-1], row_starts[1:])}


def _recent(films: list[int], before: list[int]) -> list[int]:
    """The recent list after watching `films` in order: the RECENT_MAX films watched last,
    newest first (what moving each watched film to the front, capped, leaves)."""
    newest = list(dict.fromkeys(reversed(films)))
    if len(newest) < RECENT_MAX:
        seen = set(newest)
        newest += [f for f in before if f not in seen]
    return newest[:RECENT_MAX]


def _stamp(value: Any) -> tuple[int, int, float]:
    """A viewer entry as (source partition, source offset of the play that made it, written at)."""
    if isinstance(value, list) and len(value) == 3:
        return value[0], value[1], value[2]
    return -1, -1, 0.0  # unknown origin (written by an older version): expires at the next sweep


def fold_films(
    current: Callable[[int], dict[str, Any] | None], viewer: Callable[[str], Any], batch: StatsBatch,
    now: float, refresh_before: float,
) -> tuple[dict[int, dict[str, Any]], dict[str, list], StatsBatch]:
    """(new record of every film in `batch`, viewer entries to write, the actions applied now).

    The per-action fold (`apply_film` in order) as group-bys, with marks per
    film and source partition (a film batch mixes source partitions; per
    partition, offsets still come in order). Unique viewers:
    `film_viewers["film:user"]` = [partition, offset, written at] of the play
    that made the user a viewer. A play counts a new viewer when there is no
    entry, or when the entry is its own (the entry's write survived a crash
    that lost the film record's). A play applied before re-writes its entry
    (in case that write was lost), and an entry older than `refresh_before`
    is re-stamped so that regular viewers do not expire.
    """
    if not len(batch):
        return {}, {}, batch
    films = _Keyed(batch.film_id, current)
    records, count = films.records, len(films.id_list)
    partitions, where = np.unique(batch.partition, return_inverse=True)
    keys = [str(p) for p in partitions.tolist()]
    marks = np.array([[r["src"].get(k, -1) if r else -1 for k in keys] for r in records], dtype=np.int64)
    marks = marks.reshape(count, len(keys))
    new = batch.offset > marks[films.inverse, where]

    viewers: dict[str, list] = {}
    new_viewers = Counter()
    plays = np.flatnonzero(batch.event_type == _PLAY).tolist()
    if plays:
        rows = zip(plays, batch.film_id[plays].tolist(), batch.user_id[plays].tolist(),
                   batch.partition[plays].tolist(), batch.offset[plays].tolist(), new[plays].tolist())
        for row, film, user, partition, offset, fresh in rows:
            pair = f"{film}:{user}"
            entry = viewers[pair] if pair in viewers else viewer(pair)
            if not fresh:
                if pair not in viewers:
                    viewers[pair] = entry if entry is not None else [partition, offset, now]
                continue
            stamp = _stamp(entry)
            if entry is None or stamp[:2] == (partition, offset):
                viewers[pair] = [partition, offset, now]
                new_viewers[film] += 1
            elif stamp[2] < refresh_before:
                viewers[pair] = [stamp[0], stamp[1], now]

    applied = batch[new]
    kind = applied.event_type
    which = films.inverse[new]
    views = np.bincount(which[kind == _PLAY], minlength=count).tolist()
    completes = np.bincount(which[kind == _COMPLETE], minlength=count).tolist()
    rated = kind == _RATE
    ratings = np.bincount(which[rated], minlength=count).tolist()
    rating_milli = np.zeros(count, dtype=np.int64)
    np.add.at(rating_milli, which[rated], _milli_array(applied.rating[rated]))
    last = np.full((count, len(keys)), -1, dtype=np.int64)
    np.maximum.at(last, (which, where[new]), applied.offset)

    out: dict[int, dict[str, Any]] = {}
    for j, (film, record) in enumerate(zip(films.id_list, records)):
        s = dict(record) if record else new_film_stats()
        s["src"] = dict(record["src"]) if record else {}
        s["views"] += views[j]
        s["viewers"] += new_viewers[film]
        s["completes"] += completes[j]
        s["ratings"] += ratings[j]
        s["rating_milli"] += int(rating_milli[j])
        for k, offset in zip(keys, last[j].tolist()):
            if offset >= 0:
                s["src"][k] = offset
        out[film] = s
    return out, viewers, applied


def expired_users(
    records: Iterable[tuple[int, dict[str, Any]]], partition: int, before: float
) -> list[int]:
    """Users of source `partition` whose record was last written before `before`."""
    key = str(partition)
    return [user_id for user_id, record in records
            if record.get("at", before) < before and key in record.get("src", ())]


def expired_viewers(
    entries: Iterable[tuple[str, Any]], partition: int, partitions: int, before: float
) -> list[str]:
    """Viewer entries of films on film `partition` last stamped before `before`."""
    return [pair for pair, entry in entries
            if _stamp(entry)[2] < before
            and film_partition(int(pair.split(":", 1)[0]), partitions) == partition]
