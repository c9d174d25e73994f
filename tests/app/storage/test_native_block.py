"""Columns serialised by numpy: byte for byte what clickhouse-driver writes, the same refusals
(a data error for the loader's writer), and inserts into the real ClickHouse read back unchanged,
for the server's column types (a narrowed column, a type only the driver encodes)."""
from __future__ import annotations

import socket

import numpy as np
import pytest
from clickhouse_driver import Client
from clickhouse_driver import errors as ch_errors
from clickhouse_driver.bufferedwriter import BufferedSocketWriter
from clickhouse_driver.columns.service import write_column
from hypothesis import given, settings as hsettings, strategies as st

from agents.writer import DATA, classify
from app.event_columns import EventColumns
from app.events import Event
from app.storage import native_block
from app.storage.clickhouse import client
from app.storage.interactions import insert_columns

_CONTEXT = Client("127.0.0.1").connection.context  # no connection: write_column needs only its settings


def driver_bytes(spec: str, items: list) -> bytes:
    """What the driver writes for this column (into a socket pair: its writer needs a socket)."""
    ours, theirs = socket.socketpair()
    writer = BufferedSocketWriter(ours, 1 << 20)
    write_column(_CONTEXT, "x", spec, items, writer)
    writer.flush()
    ours.close()
    out = b""
    while chunk := theirs.recv(1 << 20):
        out += chunk
    theirs.close()
    return out


def _objects(values: list) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


@hsettings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=300), st.sampled_from(["", "x" * 127, "y" * 128, "z" * 16_384])),
                min_size=1, max_size=40))
def test_strings_are_the_driver_s_bytes(values: list[str]) -> None:
    assert native_block.strings(_objects(values)) == driver_bytes("String", values)


@pytest.mark.parametrize("width", [0, 1, 36, 127])
def test_strings_of_one_length_are_the_driver_s_bytes(width: int) -> None:
    values = [chr(ord("a") + i % 26) * width for i in range(50)]
    assert native_block.strings(_objects(values)) == driver_bytes("String", values)


@hsettings(max_examples=200, deadline=None)
@given(st.data())
def test_numbers_are_the_driver_s_bytes_or_refused_as_it_refuses(data) -> None:
    spec = data.draw(st.sampled_from(["Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64",
                                      "Float32", "Float64", "DateTime"]))
    if spec.startswith("Float"):
        values = data.draw(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=20))
    else:
        values = data.draw(st.lists(st.integers(-(2 ** 63), 2 ** 63 - 1), min_size=1, max_size=20))
    try:
        expected = driver_bytes(spec, list(values)) if spec != "DateTime" else None
    except (ch_errors.TypeMismatchError, OverflowError) as exc:
        expected = exc
    if spec == "DateTime":  # the driver writes integer seconds as UInt32 (it needs a server for the column)
        try:
            expected = driver_bytes("UInt32", list(values))
        except ch_errors.TypeMismatchError as exc:
            expected = exc
    if isinstance(expected, Exception):
        with pytest.raises(ch_errors.TypeMismatchError) as refused:
            native_block.encode("x", spec, np.array(values))
        assert classify(refused.value) == DATA  # halved and dead-lettered by the writer, as before
    else:
        assert native_block.encode("x", spec, np.array(values)) == expected


@pytest.mark.parametrize("values", [["ok", "\ud800"], ["ok", None], ["ok", 5]])
def test_a_string_the_column_cannot_hold_is_a_data_error(values: list) -> None:
    with pytest.raises((ValueError, TypeError)) as refused:
        native_block.strings(_objects(values))
    assert classify(refused.value) == DATA


def test_a_type_it_does_not_encode_is_left_to_the_driver() -> None:
    assert native_block.encode("x", "Nullable(String)", _objects(["a"])) is None
    assert native_block.encode("x", "Enum8('a' = 1)", _objects(["a"])) is None


# --- against the real ClickHouse ----------------------------------------------------------------

EDGE = [
    Event("e-ascii", 1, 10, "play", 1_700_000_000.9, session_id="s" * 36, source="home", model_version="v1"),
    Event("e-utf8", 2 ** 63 - 1, 2 ** 40, "rate", 1_700_000_100.0, session_id="é😀" * 64, rating=7.5,
          position=9_999),
    Event("e-long", 3, 11, "complete", 1_700_000_200.0, session_id="x" * 128, watch_seconds=1e7,
          duration_seconds=0.5, source="y" * 256, position=0),
    Event("e-empty", 4, 0, "page_view", 1_700_000_300.0),
]
_SELECT = ("SELECT event_id, user_id, film_id, event_type, toUnixTimestamp(ts), session_id, watch_seconds, "
           "duration_seconds, rating, source, model_version, position FROM interactions ORDER BY event_id")


def _expected(events: list[Event]) -> list[tuple]:
    return sorted((e.event_id, e.user_id, e.film_id, e.event_type, int(e.ts), e.session_id, e.watch_seconds,
                   e.duration_seconds, e.rating, e.source, e.model_version, e.position) for e in events)


@pytest.fixture
def conn(clickhouse_settings):
    connection = client(clickhouse_settings)
    yield connection
    connection.disconnect()


@pytest.mark.integration
def test_an_insert_reads_back_unchanged(conn) -> None:
    assert insert_columns(conn, EventColumns.from_events(EDGE)) == len(EDGE)
    assert conn.execute(_SELECT) == _expected(EDGE)


@pytest.mark.integration
def test_a_column_type_it_does_not_encode_goes_through_the_driver(conn) -> None:
    conn.execute("ALTER TABLE interactions MODIFY COLUMN source Nullable(String)")
    assert insert_columns(conn, EventColumns.from_events(EDGE)) == len(EDGE)
    assert conn.execute(_SELECT) == _expected(EDGE)


@pytest.mark.integration
def test_a_narrowed_column_refuses_the_insert_and_stores_nothing(conn) -> None:
    conn.execute("ALTER TABLE interactions MODIFY COLUMN position Int8")  # EDGE holds 9,999
    with pytest.raises(ch_errors.TypeMismatchError, match="position") as refused:
        insert_columns(conn, EventColumns.from_events(EDGE))
    assert classify(refused.value) == DATA
    assert conn.execute("SELECT count() FROM interactions") == [(0,)]  # the connection is usable again
    fits = [e for e in EDGE if e.position < 128]
    assert insert_columns(conn, EventColumns.from_events(fits)) == len(fits)
    assert conn.execute(_SELECT) == _expected(fits)
