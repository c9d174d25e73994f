"""A batch of Kafka message values read by Arrow's JSON reader: typed columns with no
Python object per event (the loader's common case, app/event_columns.py).

Why: decoding every value with orjson and then taking each field out of the
decoded dicts was most of the loader's parsing time (docs/ingestion.md,
"Where the time goes now"); Arrow reads the newline-joined values in C++ into
typed columns.

Arrow's reader is not orjson: it accepts `NaN`/`Infinity`, reads lines (so a
value with a newline is several rows), and its errors are per batch. So
`columns` only answers for batches where the two must agree, and returns
None for the rest (the caller then parses them as before):
- every value is bytes, non-empty, at most MAX_EVENT_BYTES, starts with `{`
  and the batch holds exactly one `{` per value and no `[`: one flat object
  per value, no nesting (orjson's depth limit cannot differ);
- one line per value (no newline inside any value), ASCII only and no `\\u`
  escape (no invalid UTF-8 or lone surrogate that orjson would refuse), no
  `NaN` or `Inf` anywhere;
- Arrow read the batch without error, as exactly one row per value, with
  each known field of its JSON type (a field of another type, a duplicated
  key, a number out of int64 range: Arrow refuses the batch).
Only the field TYPES are Arrow's verdict; null (= absent, as for
`app.events.validate`), ranges and lengths are left to the caller's checks.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from app.events import MAX_EVENT_BYTES
from app.schema import EVENT_TYPES

_TEXTS = ("session_id", "source", "model_version")
_SCHEMA = pa.schema([
    ("event_id", pa.string()), ("user_id", pa.int64()), ("film_id", pa.int64()), ("event_type", pa.string()),
    ("ts", pa.float64()), ("session_id", pa.string()), ("watch_seconds", pa.float64()),
    ("duration_seconds", pa.float64()), ("rating", pa.float64()), ("source", pa.string()),
    ("model_version", pa.string()), ("position", pa.int64()),
])
_PARSE = pa_json.ParseOptions(explicit_schema=_SCHEMA, unexpected_field_behavior="ignore")
# one block for any batch (the loader's batches are a few MB); threads would fight the event loop
_READ = pa_json.ReadOptions(use_threads=False, block_size=1 << 26)
_TYPES = pa.array(EVENT_TYPES)


class RawColumns(NamedTuple):
    """Arrow's columns as numpy, before the range checks (see `columns`)."""

    present: np.ndarray  # bool: event_id, user_id and ts are not null
    event_id: np.ndarray  # object (str), "" where null
    event_id_len: np.ndarray
    user_id: np.ndarray  # int64, 0 where null
    film_id: np.ndarray  # int64, 0 where null
    film_absent: np.ndarray  # bool
    event_type: np.ndarray  # int32: index in EVENT_TYPES, -1 for null or unknown
    ts: np.ndarray  # float64 as sent (epoch ms), NaN where null
    session_id: np.ndarray  # object (str), "" where null
    watch_seconds: np.ndarray  # float64, 0.0 where null
    duration_seconds: np.ndarray
    duration_absent: np.ndarray
    rating: np.ndarray
    rating_absent: np.ndarray
    source: np.ndarray
    model_version: np.ndarray
    position: np.ndarray  # int64
    position_absent: np.ndarray
    texts_len: np.ndarray  # the longest of session_id, source, model_version, per row


def columns(values: Sequence[bytes | str | None]) -> RawColumns | None:
    """The batch as typed columns, or None when Arrow cannot be trusted to read it as orjson would."""
    n = len(values)
    if set(map(type, values)) != {bytes} or max(map(len, values)) > MAX_EVENT_BYTES:
        return None
    if not all(map(bytes.startswith, values, (b"{",) * n)):
        return None
    joined = b"\n".join(values)
    if (joined.count(b"\n") != n - 1 or joined.count(b"{") != n or not joined.isascii() or b"[" in joined
            or (b"\\" in joined and b"\\u" in joined) or (b"N" in joined and b"NaN" in joined)
            or (b"I" in joined and b"Inf" in joined)):  # one byte first: a memchr, not a substring search
        return None
    try:
        table = pa_json.read_json(pa.py_buffer(joined), read_options=_READ, parse_options=_PARSE)
    except pa.ArrowInvalid:
        return None
    if table.num_rows != n:
        return None
    col = {name: table.column(name) for name in _SCHEMA.names}
    present = ~_null(col["event_id"]) & ~_null(col["user_id"]) & ~_null(col["ts"])
    kind = pc.fill_null(pc.index_in(col["event_type"], value_set=_TYPES), -1)
    texts = {name: pc.fill_null(col[name], "") for name in ("event_id", *_TEXTS)}
    longest = np.max([_lengths(texts[name]) for name in _TEXTS], axis=0)
    return RawColumns(
        present, _objects(texts["event_id"]), _lengths(texts["event_id"]), _numbers(col["user_id"], 0),
        _numbers(col["film_id"], 0), _null(col["film_id"]), _numbers(kind, -1), _numbers(col["ts"], np.nan),
        _objects(texts["session_id"]), _numbers(col["watch_seconds"], 0.0), _numbers(col["duration_seconds"], 0.0),
        _null(col["duration_seconds"]), _numbers(col["rating"], 0.0), _null(col["rating"]),
        _objects(texts["source"]), _objects(texts["model_version"]), _numbers(col["position"], 0),
        _null(col["position"]), longest,
    )


def _null(column: pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.is_null(column))


def _numbers(column: pa.ChunkedArray, fill) -> np.ndarray:
    return np.asarray(pc.fill_null(column, fill))


def _lengths(column: pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.binary_length(column))  # ASCII: bytes = characters


def _objects(column: pa.ChunkedArray) -> np.ndarray:
    return column.to_numpy(zero_copy_only=False)
