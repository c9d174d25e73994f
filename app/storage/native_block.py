"""A columnar INSERT over clickhouse-driver's connection with each column serialised by numpy.

Why: the driver serialises an insert value by value in Python (`struct.pack`
per chunk of numbers, an encode and a length per string): in the loader-only
profile of session 5 that was the ClickHouse writer thread's ~3 us per event,
all of it holding the GIL the event loop and the parser need
(docs/ingestion.md, "Profile, session 5"). Here each column of ClickHouse's
Native format is built by numpy in a few whole-array operations (strings:
Arrow's UTF-8 buffer with the varint lengths scattered in) and written to
the driver's socket as one Data packet.

The driver's contract is kept, which is why the driver still runs the query:
- the columns are serialised for the types the SERVER announces for the
  insert (its sample block), not for the types we expect: a narrowed column
  is serialised narrow;
- a value the column cannot hold is refused before anything is sent, with
  the driver's `TypeMismatchError` (a data error for agents/writer.py: the
  batch is halved until the record is alone), never cast;
- a column type this module does not encode is written by the driver's own
  `write_column` (same bytes as a plain `execute`);
- errors, timeouts and the disconnect on error are the driver's
  (`disconnect_on_error`, its socket timeouts).

The block is written uncompressed, as the project's clients talk
(app/storage/clickhouse.py `client`: no `compression`; the driver's
compression extras are not installed).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pyarrow as pa
from clickhouse_driver import Client, defines
from clickhouse_driver import errors as ch_errors
from clickhouse_driver.block import BlockInfo, ColumnOrientedBlock
from clickhouse_driver.columns.service import write_column
from clickhouse_driver.protocol import ClientPacketTypes
from clickhouse_driver.varint import write_varint
from clickhouse_driver.writer import write_binary_str, write_binary_uint8

_INTS = {f"{'U' if unsigned else ''}Int{bits}": np.dtype(f"<{'u' if unsigned else 'i'}{bits // 8}")
         for unsigned in (False, True) for bits in (8, 16, 32, 64)}
_FLOATS = {"Float32": np.dtype("<f4"), "Float64": np.dtype("<f8")}


def _refuse(name: str, spec: str, values: np.ndarray, bad: np.ndarray) -> None:
    if bad.any():
        raise ch_errors.TypeMismatchError(f"Type mismatch in VALUES section: column {name} ({spec}) cannot hold "
                                          f"{values[np.flatnonzero(bad)[0]].item()!r}")


def _integers(name: str, spec: str, values: np.ndarray, dtype: np.dtype) -> bytes:
    if values.dtype.kind not in "iu":
        raise ch_errors.TypeMismatchError(f"Type mismatch in VALUES section: column {name} ({spec}) got {values.dtype}")
    info = np.iinfo(dtype)
    _refuse(name, spec, values, (values < info.min) | (values > info.max))
    return values.astype(dtype, copy=False).tobytes()


def _floats(name: str, spec: str, values: np.ndarray, dtype: np.dtype) -> bytes:
    if values.dtype.kind not in "fiu":
        raise ch_errors.TypeMismatchError(f"Type mismatch in VALUES section: column {name} ({spec}) got {values.dtype}")
    values = values.astype(np.float64, copy=False)
    # as the driver's struct.pack("f"): a finite value past the float32 range is refused, not made inf
    _refuse(name, spec, values, np.isfinite(values) & (np.abs(values) > np.finfo(dtype).max))
    return values.astype(dtype).tobytes()


def _varints(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(bytes of each length's LEB128 varint as rows of 5, number of bytes used per row)."""
    size = np.ones(len(lengths), dtype=np.int64)
    for k in range(1, 5):
        size += lengths >= (1 << (7 * k))
    groups = (lengths[:, None] >> (7 * np.arange(5))) & 0x7F
    more = np.arange(5) < (size[:, None] - 1)
    return (groups | (more * 0x80)).astype(np.uint8), size


def strings(values: np.ndarray | list) -> bytes:
    """A String column: each value's UTF-8 bytes after its varint length (raises ValueError/TypeError
    for a value that is not a str or does not encode, as the driver's encode would)."""
    array = pa.array(values, type=pa.large_string())
    if array.null_count:
        raise TypeError("a String column cannot hold None")
    n = len(array)
    if n == 0:
        return b""
    offsets = np.frombuffer(array.buffers()[1], dtype=np.int64, count=n + 1, offset=array.offset * 8)
    buffer = array.buffers()[2]
    data = np.frombuffer(buffer, dtype=np.uint8) if buffer is not None else np.empty(0, np.uint8)
    lengths = np.diff(offsets)
    first = int(offsets[0])
    if lengths.min() == lengths.max() < 128:  # one length (UUIDs, empty texts): rows of length byte + bytes
        width = int(lengths[0])
        rows = np.empty((n, width + 1), dtype=np.uint8)
        rows[:, 0] = width
        rows[:, 1:] = data[first:first + n * width].reshape(n, width)
        return rows.tobytes()
    starts = np.zeros(n, dtype=np.int64)
    if lengths.max() < 128:  # one-byte lengths: each row is its length byte then its bytes
        np.cumsum((lengths + 1)[:-1], out=starts[1:])
        out = np.empty(n + int(lengths.sum()), dtype=np.uint8)
        out[starts] = lengths
        body = np.ones(len(out), dtype=bool)
        body[starts] = False
        out[body] = data[first:int(offsets[-1])]
        return out.tobytes()
    prefix, size = _varints(lengths)
    np.cumsum((size + lengths)[:-1], out=starts[1:])
    out = np.empty(int(size.sum() + lengths.sum()), dtype=np.uint8)
    for k in range(int(size.max())):
        rows = np.flatnonzero(size > k)
        out[starts[rows] + k] = prefix[rows, k]
    moved = np.repeat(starts + size - offsets[:-1], lengths)
    out[np.arange(first, int(offsets[-1])) + moved] = data[first:int(offsets[-1])]
    return out.tobytes()


def encode(name: str, spec: str, values: np.ndarray) -> bytes | None:
    """The Native-format bytes of a column of type `spec`, or None when this module does not encode it."""
    if spec in _INTS:
        return _integers(name, spec, values, _INTS[spec])
    if spec in _FLOATS:
        return _floats(name, spec, values, _FLOATS[spec])
    if spec == "DateTime":  # UInt32 seconds; the caller passes integer epoch seconds
        return _integers(name, spec, values, np.dtype("<u4"))
    if spec == "String" and values.dtype == object:
        return strings(values)
    return None


def insert(conn: Client, query: str, columns: dict[str, np.ndarray], fallback: Callable[[], list[list]]) -> int:
    """Run the INSERT `query` (... VALUES, columns named as in `columns`) with the rows of `columns`
    in one block; `fallback()` gives the same columns as lists for the driver's own path."""
    n = len(next(iter(columns.values())))
    with conn.disconnect_on_error(query, None):
        connection = conn.connection
        connection.send_query(query)
        connection.send_external_tables(None)
        sample = conn.receive_sample_block()
        if not sample:
            return 0
        types = sample.columns_with_types  # the columns the query names, with the server's types
        # every column we encode is serialised (and checked) before a byte of data goes out
        encoded = {name: encode(name, spec, columns[name]) for name, spec in types}
        out = connection.fout
        write_varint(ClientPacketTypes.DATA, out)
        revision = connection.server_info.used_revision
        if revision >= defines.DBMS_MIN_REVISION_WITH_TEMPORARY_TABLES:
            write_binary_str("", out)
        if revision >= defines.DBMS_MIN_REVISION_WITH_BLOCK_INFO:
            BlockInfo().write(out)
        write_varint(len(types), out)
        write_varint(n, out)
        lists: dict[str, list] | None = None
        for name, spec in types:
            write_binary_str(name, out)
            write_binary_str(spec, out)
            if revision >= defines.DBMS_MIN_REVISION_WITH_CUSTOM_SERIALIZATION:
                write_binary_uint8(0, out)
            if encoded[name] is None:  # as the driver writes it (a type we do not encode)
                lists = dict(zip(columns, fallback())) if lists is None else lists
                write_column(connection.context, name, spec, lists[name], out, types_check=False)
            else:
                out.write(encoded[name])
        out.flush()
        conn.receive_profile_events()
        connection.send_data(ColumnOrientedBlock())  # an empty block ends the data
        conn.receive_profile_events()
        conn.receive_end_of_insert_query()
    return n

