"""The column fast path accepts exactly what `parse_event` accepts, with the same values, and is total.

Hypothesis properties compare `parse_columns` over a batch with `parse_event`
value by value: batches of valid events with fields set to the edge values of
every column check (absent, null, zero, bounds, wrong types, huge integers,
non-ASCII text), arbitrary field values over a good event, byte-mutated
events and arbitrary bytes, mixed in one batch. The run prints how many
values the properties compared.
"""
from __future__ import annotations

import json
import random
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from app import event_columns
from app.event_columns import EventColumns, parse_columns
from app.events import MAX_EVENT_BYTES, Event, InvalidEvent, parse_event
from app.schema import EVENT_TYPES
from tests.app.test_events import EVENT_DICTS, GOOD, NOW, RATED

BATCHES = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
COMPARED: Counter = Counter()

# Edge values of each check in app/event_columns.py (and of validate's), per field.
EDGES = {
    "event_id": ["", "a", "a" * 64, "a" * 65, "é" * 64, "é" * 65, "\u2028", None, 5, ["e"]],
    "user_id": [0, -1, 1, 2**63 - 1, 2**63, 2**64 + 5, 10**30, "12", "²", True, 1.0, None, {}],
    "film_id": [0, -1, 1, 2**63 - 1, 2**63, "3", None, False, 3.0, []],
    "event_type": [*EVENT_TYPES, "teleport", "", None, ["play"], 1],
    "ts": [631_152_000_000, 631_151_999_999, 631_152_000_000.5, int(NOW * 1000) + 300_000,
           int(NOW * 1000) + 300_001, 2**53, 2**53 + 1, -(2**60), 10**30, 1.7e12, "2023-11-14T22:13:20Z",
           "garbage", True, None, 0],
    "rating": [0, 0.0, 0.99, 1, 1.0, 5.5, 10, 10.0, 10.000001, -1, True, None, "5", 2**70],
    "watch_seconds": [0, 0.0, -0.0, -1e-9, 1, 10_000_000, 10_000_000.5, 2**70, True, None, "1"],
    "duration_seconds": [0, 0.0, -0.0, 1e-300, 1, 10_000_000, 10_000_001, True, None, "1"],
    "position": [0, -1, 9999, 10_000, 1.0, True, None, 2**70, "3"],
    "session_id": ["", "s", "x" * 256, "x" * 257, "é" * 256, "é" * 257, None, 5],
    "source": ["", "home", "x" * 257, None, False],
    "model_version": ["", "v1", "x" * 256, "x" * 257, None, 1.5],
}
ABSENT = object()


@st.composite
def edge_events(draw) -> bytes:
    """A good event (of any type) with 0-3 fields set to edge values or removed."""
    data = {**GOOD, "event_type": draw(st.sampled_from(EVENT_TYPES))}
    if data["event_type"] == "rate":
        data["rating"] = draw(st.sampled_from([1, 7.5, 10]))
    for name in draw(st.lists(st.sampled_from(sorted(EDGES)), max_size=3, unique=True)):
        value = draw(st.sampled_from([ABSENT, *EDGES[name]]))
        if value is ABSENT:
            data.pop(name, None)
        else:
            data[name] = value
    return json.dumps(data).encode()


def mutated(seed: int) -> bytes:
    rnd = random.Random(seed)
    raw = bytearray(RATED)
    for _ in range(rnd.randint(1, 3)):
        at = rnd.randrange(len(raw) + 1)
        if rnd.random() < 0.5 and at < len(raw):
            raw[at] = rnd.randrange(256)
        else:
            raw[at:at] = rnd.randbytes(rnd.randint(1, 4))
    return bytes(raw)


def _dumps(data: dict) -> bytes:
    try:
        return json.dumps(data).encode()
    except (ValueError, TypeError):  # NaN or a surrogate json refuses: still a value to parse
        return repr(data).encode()


VALUES = st.one_of(
    edge_events(),
    EVENT_DICTS.map(lambda d: _dumps({**GOOD, **d})),
    st.integers(0, 2**32).map(mutated),
    st.binary(max_size=60),
    st.sampled_from([None, b"", b"{}", b"[]", b"null", b" " * 3, b"x" * (MAX_EVENT_BYTES + 1)]),
)


def _expected(value: bytes | None) -> Event | str:
    try:
        return parse_event(value, now=NOW)
    except InvalidEvent as exc:
        return exc.reason


def _compare(values: list) -> None:
    got = parse_columns(values, now=NOW)
    expected = [_expected(v) for v in values]
    COMPARED["values"] += len(values)
    accepted = [i for i, e in enumerate(expected) if isinstance(e, Event)]
    assert got.positions.tolist() == accepted
    assert got.columns.events() == [expected[i] for i in accepted]
    assert [(i, exc.reason) for i, exc in got.rejects] == [(i, e) for i, e in enumerate(expected) if isinstance(e, str)]
    for name, dtype in EventColumns.DTYPES.items():
        assert getattr(got.columns, name).dtype == np.dtype(dtype), name


@pytest.fixture(scope="module", autouse=True)
def report_values_compared(request: pytest.FixtureRequest):
    yield
    if COMPARED:
        capture = request.config.pluginmanager.get_plugin("capturemanager")
        with capture.global_and_fixture_disabled():
            print(f"\ntest_event_columns: values compared with parse_event: {COMPARED['values']:,} "
                  f"(edge-value events: {COMPARED['edge']:,})")


@BATCHES
@given(st.lists(VALUES, min_size=1, max_size=25))
def test_columns_equal_parse_event_over_mixed_batches(values: list) -> None:
    _compare(values)


@BATCHES
@given(st.lists(edge_events(), min_size=1, max_size=25))
def test_columns_equal_parse_event_over_batches_of_edge_events(values: list) -> None:
    """All decodable objects, so the one-pass decode and the column checks decide every row."""
    COMPARED["edge"] += len(values)
    _compare(values)


def test_a_bug_in_the_fast_path_or_in_parse_event_costs_no_batch(monkeypatch) -> None:
    values = [json.dumps(GOOD).encode(), b"boom", json.dumps({**GOOD, "event_id": "e2"}).encode()]

    def broken(*_):
        raise ZeroDivisionError("fast path bug")

    monkeypatch.setattr(event_columns, "_fast_columns", broken)
    real = parse_event

    def fragile(raw, now=None):
        if raw == b"boom":
            raise KeyError("parser bug")
        return real(raw, now)

    monkeypatch.setattr(event_columns, "parse_event", fragile)
    got = parse_columns(values, now=NOW)
    assert got.positions.tolist() == [0, 2]
    assert [e.event_id for e in got.columns.events()] == ["e1", "e2"]
    assert [(i, type(exc).__name__) for i, exc in got.rejects] == [(1, "KeyError")]


def test_columns_round_trip_events_and_select_rows() -> None:
    events = [Event("a", 1, 2, "play", 1.7e9), Event("b", 2**63 - 1, 0, "page_view", 1.7e9 + 1, "s", 1.5, 2.0,
                                                     7.0, "home", "v", 3)]
    columns = EventColumns.from_events(events)
    assert columns.events() == events
    assert columns[np.array([1])].events() == events[1:] and columns[:1].events() == events[:1]
    assert EventColumns.concat([columns, columns]).events() == events * 2
    assert len(EventColumns.empty()) == 0 and EventColumns.from_events([]).events() == []
    assert parse_columns([]).positions.tolist() == []


@BATCHES
@given(st.lists(VALUES, min_size=1, max_size=25))
def test_arrow_path_equals_parse_event_down_to_single_values(values: list) -> None:
    """With no size floor, Arrow reads every part it may (single values included) and
    every part it may not is halved: the result still equals `parse_event`'s."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(event_columns, "_ARROW_MIN_ROWS", 0)
        _compare(values)


@pytest.mark.parametrize("slow_path", ["parse_event", "_object_columns"])
def test_a_clean_batch_is_read_by_arrow_with_no_python_object_per_event(monkeypatch, slow_path: str) -> None:
    """Neither the event-by-event parser nor the orjson-per-object path touches a clean batch."""
    values = [json.dumps({**GOOD, "event_id": f"e{i}", "user_id": 1 + i}).encode() for i in range(50)]
    expected = [parse_event(v, now=NOW) for v in values]
    monkeypatch.setattr(event_columns, slow_path, lambda *a: pytest.fail(f"{slow_path} used for a clean batch"))
    got = parse_columns(values, now=NOW)
    assert got.columns.user_id.tolist() == list(range(1, 51)) and not got.rejects
    assert got.columns.events() == expected


def test_one_bad_value_sends_only_a_small_part_of_the_batch_to_orjson(monkeypatch) -> None:
    values = [json.dumps({**GOOD, "event_id": f"e{i}"}).encode() for i in range(1000)]
    values[500] = json.dumps({**GOOD, "event_id": "x", "user_id": True}).encode()
    seen: list[int] = []
    real = event_columns._object_columns
    monkeypatch.setattr(event_columns, "_object_columns", lambda vs, now: seen.append(len(vs)) or real(vs, now))
    got = parse_columns(values, now=NOW)
    assert [(i, exc.reason) for i, exc in got.rejects] == [(500, "bad_user_id")]
    assert len(got.columns) == 999 and sum(seen) <= 2 * event_columns._ARROW_MIN_ROWS
