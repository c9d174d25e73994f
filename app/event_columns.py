"""Events as columns, and the loader's fast path: a whole batch parsed and validated per column.

Why: per event, `app.events.parse_event` costs a few microseconds of Python
(dict lookups, type tests, a NamedTuple) and the loader then transposes the
tuples into columns for ClickHouse; with millions of events that was half of
the loader's CPU (docs/ingestion.md, "Where the time goes").

`parse_columns` reads the batch with Arrow's JSON reader into typed columns
(app/arrow_events.py, no Python object per event) where Arrow is sure to read
it as orjson would; any other part of the batch (halved until small) is
decoded with orjson and each field taken out of all its objects at once.
Either way the COMMON case is checked on whole columns (types, ranges,
lengths) with numpy. `app.events.parse_event` stays the
one definition of a valid event: any row the column checks are not sure of
(a string id, an ISO time, a null, anything out of range, a value that is
not an object, not JSON or too large) is judged by
`parse_event` itself, alone, and any exception from that is caught and
returned with the row (`rejects`). So for every input the result equals
parsing each value with `parse_event` (tests/app/test_event_columns.py proves
it with Hypothesis over arbitrary and mutated inputs), and nothing escapes.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, fields
from itertools import repeat
from typing import Any, Iterable, NamedTuple, Sequence

import numpy as np
import orjson

from app import arrow_events
from app.events import MAX_EVENT_BYTES, MAX_FUTURE_SKEW_S, MAX_STR, MIN_TS_S, Event, parse_event
from app.schema import EVENT_TYPES, INTERACTION_COLUMNS, NO_POSITION, NO_RATING

log = logging.getLogger(__name__)

TYPE_CODE = {name: code for code, name in enumerate(EVENT_TYPES)}
TYPE_NAMES = np.array(EVENT_TYPES, dtype=object)
_MAX_EVENT_ID = 64
_MAX_POSITION = 10_000
_MAX_SECONDS = 1e7
_ARROW_MIN_ROWS = 8  # at most this many values go through orjson, not Arrow (its fixed cost per call)
_ABSENT = -math.inf  # default of float fields whose explicit 0 is invalid (orjson never yields -inf)


@dataclass(slots=True)
class EventColumns:
    """Valid events as equally long numpy columns, in INTERACTION_COLUMNS order.

    Text columns are object arrays of str; `event_type` holds the index of the
    type in `app.schema.EVENT_TYPES`; `ts` is epoch seconds (float).
    """

    event_id: np.ndarray
    user_id: np.ndarray  # int64
    film_id: np.ndarray  # int64, 0 for a page_view without a film
    event_type: np.ndarray  # int8
    ts: np.ndarray  # float64
    session_id: np.ndarray
    watch_seconds: np.ndarray  # float64
    duration_seconds: np.ndarray  # float64
    rating: np.ndarray  # float64, NO_RATING when absent
    source: np.ndarray
    model_version: np.ndarray
    position: np.ndarray  # int32, NO_POSITION when absent

    DTYPES = {"event_id": object, "user_id": np.int64, "film_id": np.int64, "event_type": np.int8,
              "ts": np.float64, "session_id": object, "watch_seconds": np.float64,
              "duration_seconds": np.float64, "rating": np.float64, "source": object, "model_version": object,
              "position": np.int32}

    def __len__(self) -> int:
        return len(self.user_id)

    def __getitem__(self, index: slice | np.ndarray | Sequence[int]) -> "EventColumns":
        """The rows at `index` (a slice, positions or a boolean mask), as columns."""
        if not isinstance(index, slice):
            index = np.asarray(index)
        return EventColumns(*(getattr(self, name)[index] for name in INTERACTION_COLUMNS))

    @classmethod
    def from_events(cls, events: Sequence[Event]) -> "EventColumns":
        """Columns of `events` (tests, importers, the rows `parse_event` judged alone)."""
        if not events:
            return cls.empty()
        columns = list(zip(*events))
        columns[INTERACTION_COLUMNS.index("event_type")] = [TYPE_CODE[name] for name in columns[3]]
        return cls(*(_array(values, cls.DTYPES[name]) for name, values in zip(INTERACTION_COLUMNS, columns)))

    @classmethod
    def empty(cls) -> "EventColumns":
        return cls(*(np.empty(0, dtype=cls.DTYPES[name]) for name in INTERACTION_COLUMNS))

    @classmethod
    def concat(cls, parts: Sequence["EventColumns"]) -> "EventColumns":
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return cls.empty()
        return cls(*(np.concatenate([getattr(p, name) for p in parts]) for name in INTERACTION_COLUMNS))

    def events(self) -> list[Event]:
        """The rows as `Event`s (plain Python values)."""
        columns = [getattr(self, name).tolist() for name in INTERACTION_COLUMNS]
        columns[3] = TYPE_NAMES[self.event_type].tolist()
        return [Event(*row) for row in zip(*columns)]

    def type_names(self) -> np.ndarray:
        return TYPE_NAMES[self.event_type]


def _array(values: Iterable, dtype: Any) -> np.ndarray:
    if dtype is object:
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out
    return np.array(values, dtype=dtype)


class ParsedColumns(NamedTuple):
    """A batch after `parse_columns`: the valid rows as columns, in input order, with their
    positions in the input, and each rejected position with what `parse_event` raised."""

    columns: EventColumns
    positions: np.ndarray  # int64, increasing
    rejects: list[tuple[int, Exception]]


def parse_columns(values: Sequence[bytes | str | None], now: float | None = None) -> ParsedColumns:
    """Parse and validate `values` (Kafka message values) as `parse_event` would, value by value.

    Total: never raises; an exception `parse_event` raises for a value (an
    `InvalidEvent`, or anything else: a bug) is returned with its position.
    """
    now = time.time() if now is None else now
    n = len(values)
    if n == 0:
        return ParsedColumns(EventColumns.empty(), np.empty(0, dtype=np.int64), [])
    try:
        fast, ok = _fast_columns(values, now)
    except Exception:  # noqa: BLE001 - a bug in the fast path must not cost the batch: judge each alone
        log.exception("column parser failed on a batch of %d; parsing its events one by one", n)
        ok = np.zeros(n, dtype=bool)
        fast = EventColumns.empty()
    else:
        if ok.all():
            return ParsedColumns(fast, np.arange(n, dtype=np.int64), [])
        fast = fast[ok]
    unsure = np.flatnonzero(~ok).tolist()
    slow: list[Event] = []
    slow_positions: list[int] = []
    rejects: list[tuple[int, Exception]] = []
    for i in unsure:
        try:
            slow.append(parse_event(values[i], now))
            slow_positions.append(i)
        except Exception as exc:  # noqa: BLE001 - InvalidEvent, or a bug: the caller dead-letters it
            rejects.append((i, exc))
    positions = np.flatnonzero(ok)
    if not slow:
        return ParsedColumns(fast, positions, rejects)
    positions = np.concatenate([positions, np.array(slow_positions, dtype=np.int64)])
    order = np.argsort(positions, kind="stable")
    merged = EventColumns.concat([fast, EventColumns.from_events(slow)])
    return ParsedColumns(merged[order], positions[order], rejects)


def _decode(value: bytes | str | None) -> Any:
    """orjson's value, or None for what only `parse_event` may judge (empty, too large, not JSON)."""
    if not value or len(value) > MAX_EVENT_BYTES:
        return None
    try:
        return orjson.loads(value)
    except (ValueError, TypeError):
        return None


def _decode_all(values: Sequence[bytes | str | None]) -> list[dict]:
    """Every value decoded; anything that is not a JSON object becomes {} (its row fails the checks)."""
    try:
        if max(map(len, values)) > MAX_EVENT_BYTES:
            raise ValueError("too large")
        docs = list(map(orjson.loads, values))  # the common case: one C-level pass
    except (TypeError, ValueError):  # a None, an empty, oversized or malformed value: one by one
        docs = [_decode(value) for value in values]
    if set(map(type, docs)) != {dict}:
        docs = [doc if type(doc) is dict else {} for doc in docs]
    return docs


def _typed(column: list, allowed: frozenset) -> np.ndarray | None:
    """None when every value's type is in `allowed` (the common case), else the row mask of those that are."""
    if set(map(type, column)) <= allowed:
        return None
    return np.fromiter((type(value) in allowed for value in column), dtype=bool, count=len(column))


def _and(ok: np.ndarray, mask: np.ndarray | None) -> None:
    if mask is not None:
        ok &= mask


def _safe(column: list, typed: np.ndarray | None, placeholder: Any) -> list:
    """`column` with the values of a wrong type replaced (so that a numpy conversion cannot fail)."""
    if typed is None:
        return column
    return [value if good else placeholder for value, good in zip(column, typed.tolist())]


_STR = frozenset({str})
_INT = frozenset({int})
_NUMBER = frozenset({int, float})


def _numbers(column: list, ok: np.ndarray, allowed: frozenset, dtype: Any) -> np.ndarray:
    """`column` as a numpy array; rows of another type, or too large for `dtype`, fail `ok`."""
    typed = _typed(column, allowed)
    _and(ok, typed)
    safe = _safe(column, typed, 0)
    try:
        return np.array(safe, dtype=dtype)
    except OverflowError:  # an integer too large for the dtype (rare): those rows fail
        big = [not _fits(value, dtype) for value in safe]
        ok &= ~np.array(big, dtype=bool)
        return np.array([0 if b else value for value, b in zip(safe, big)], dtype=dtype)


def _fits(value: Any, dtype: Any) -> bool:
    try:
        np.array([value], dtype=dtype)
    except OverflowError:
        return False
    return True


def _texts(column: list, ok: np.ndarray, max_len: int, min_len: int = 0) -> np.ndarray:
    """`column` as an object array; rows that are not a str of min_len..max_len chars fail `ok`.
    (No UTF-8 test: orjson refuses invalid UTF-8 and lone surrogates, so its strings always encode.)"""
    typed = _typed(column, _STR)
    _and(ok, typed)
    safe = _safe(column, typed, "")
    if not min_len <= min(map(len, safe)) or max(map(len, safe)) > max_len:
        lengths = np.fromiter(map(len, safe), dtype=np.int64, count=len(safe))
        ok &= (lengths >= min_len) & (lengths <= max_len)
    return _array(safe, object)


def _fast_columns(values: Sequence[bytes | str | None], now: float) -> tuple[EventColumns, np.ndarray]:
    """(columns of all rows, mask of the rows the checks accept); rejected rows hold placeholders.

    Arrow's JSON reader first (app/arrow_events.py: the whole batch in C++, no
    Python object per event); a part it cannot take alone (a value outside
    its guards, or that it refuses) is halved until the parts are small, and
    those go to the per-object path (`_object_columns`).
    """
    n = len(values)
    if n > _ARROW_MIN_ROWS:
        arrow = arrow_events.columns(values)
        if arrow is not None:
            return _checked(arrow, now)
        if n > max(2 * _ARROW_MIN_ROWS, 1):
            half = n // 2
            parts = [_fast_columns(values[:half], now), _fast_columns(values[half:], now)]
            return EventColumns.concat([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    return _object_columns(values, now)


def _checked(raw: "arrow_events.RawColumns", now: float) -> tuple[EventColumns, np.ndarray]:
    """The checks of `_object_columns` on Arrow's typed columns (Arrow checked the JSON types;
    a null field reads as absent, as in `validate`: `raw`'s masks say which)."""
    ok = raw.present.copy()
    ok &= (raw.event_id_len >= 1) & (raw.event_id_len <= _MAX_EVENT_ID)
    event_type = raw.event_type
    ok &= event_type >= 0
    page_view = event_type == TYPE_CODE["page_view"]
    ok &= raw.user_id > 0
    film_absent = raw.film_absent
    ok &= np.where(film_absent, page_view, raw.film_id > 0)
    ts = raw.ts / 1000.0
    ok &= (ts >= MIN_TS_S) & (ts <= now + MAX_FUTURE_SKEW_S)
    rating, absent = raw.rating, raw.rating_absent
    ok &= absent | ((rating >= 1.0) & (rating <= 10.0))
    ok &= ~(absent & (event_type == TYPE_CODE["rate"]))
    rating = np.where(absent, NO_RATING, rating)
    watch = raw.watch_seconds
    ok &= (watch >= 0.0) & (watch <= _MAX_SECONDS)
    duration, absent = raw.duration_seconds, raw.duration_absent
    ok &= absent | ((duration > 0.0) & (duration <= _MAX_SECONDS))
    duration = np.where(absent, 0.0, duration)
    position, absent = raw.position, raw.position_absent
    ok &= absent | ((position >= 0) & (position < _MAX_POSITION))
    position = np.where(absent | ~ok, NO_POSITION, position).astype(np.int32)
    ok &= raw.texts_len <= MAX_STR
    columns = EventColumns(raw.event_id, raw.user_id, np.where(film_absent, 0, raw.film_id), event_type.astype(np.int8),
                           ts, raw.session_id, watch, duration, rating, raw.source, raw.model_version, position)
    return columns, ok


def _object_columns(values: Sequence[bytes | str | None], now: float) -> tuple[EventColumns, np.ndarray]:
    """`_fast_columns` through orjson's Python objects, field by field.

    Each check mirrors `app.events.validate` for the common form of a field,
    and leaves every other form to it (the row fails `ok`).
    """
    n = len(values)
    docs = _decode_all(values)
    ok = np.ones(n, dtype=bool)

    def field(name: str, default: Any = None) -> list:
        return list(map(dict.get, docs, repeat(name), repeat(default)))

    event_id = _texts(field("event_id"), ok, _MAX_EVENT_ID, min_len=1)
    kinds = field("event_type")
    typed = _typed(kinds, _STR)
    _and(ok, typed)
    event_type = np.fromiter(map(TYPE_CODE.get, _safe(kinds, typed, ""), repeat(-1)), dtype=np.int8, count=n)
    ok &= event_type >= 0
    page_view = event_type == TYPE_CODE["page_view"]

    user_id = _numbers(field("user_id"), ok, _INT, np.int64)
    ok &= user_id > 0
    # absent -> 0, valid only for a page_view; an explicit 0 (or null) is left to validate
    film_id = _numbers(field("film_id", 0), ok, _INT, np.int64)
    zero = np.flatnonzero(film_id <= 0)
    if len(zero):
        absent = np.array(["film_id" not in docs[i] for i in zero.tolist()], dtype=bool)
        ok[zero] &= absent & page_view[zero]

    ts = _numbers(field("ts"), ok, _NUMBER, np.float64) / 1000.0
    ok &= (ts >= MIN_TS_S) & (ts <= now + MAX_FUTURE_SKEW_S)

    rating = _numbers(field("rating", _ABSENT), ok, _NUMBER, np.float64)
    absent = rating == _ABSENT
    ok &= absent | ((rating >= 1.0) & (rating <= 10.0))
    ok &= ~(absent & (event_type == TYPE_CODE["rate"]))
    rating[absent] = NO_RATING

    watch = _numbers(field("watch_seconds", 0.0), ok, _NUMBER, np.float64)
    ok &= (watch >= 0.0) & (watch <= _MAX_SECONDS)
    duration = _numbers(field("duration_seconds", _ABSENT), ok, _NUMBER, np.float64)
    absent = duration == _ABSENT
    ok &= absent | ((duration > 0.0) & (duration <= _MAX_SECONDS))
    duration[absent] = 0.0

    # absent or null -> NO_POSITION (validate treats both alike); as float so None becomes NaN
    position = _numbers(field("position"), ok, frozenset({int, type(None)}), np.float64)
    absent = np.isnan(position)
    ok &= absent | ((position >= 0) & (position < _MAX_POSITION))
    position[absent | ~ok] = NO_POSITION

    texts = [_texts(field(name, ""), ok, MAX_STR) for name in ("session_id", "source", "model_version")]
    columns = EventColumns(event_id, user_id, film_id, event_type, ts, texts[0], watch, duration, rating, texts[1],
                           texts[2], position.astype(np.int32))
    return columns, ok


assert [f.name for f in fields(EventColumns)] == list(INTERACTION_COLUMNS), "EventColumns must follow the schema"
