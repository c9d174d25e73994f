"""Parsing and validation are total: for any input, an `Event` or `InvalidEvent`, nothing else.

Unit cases for every crasher found so far, then Hypothesis properties over
arbitrary bytes, arbitrary JSON values, events whose fields hold arbitrary
JSON values, and byte-mutated valid events. Run with
`pytest tests/app/test_events.py --hypothesis-show-statistics` to see how many
inputs each property tried (docs/ingestion.md quotes the figures).
"""
from __future__ import annotations

import json
import random
import sys
from collections import Counter

import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from app.events import MAX_EVENT_BYTES, SHOWN_CHARS, Event, InvalidEvent, parse_event, validate

NOW = 1_700_000_100.0
GOOD = {"event_id": "e1", "user_id": 5, "film_id": 3, "event_type": "play", "ts": 1_700_000_000_000}
FIELDS = ("event_id", "user_id", "film_id", "event_type", "ts", "session_id", "watch_seconds",
          "duration_seconds", "rating", "source", "model_version", "position")

# Many inputs, no per-example deadline (the machine is shared), a few CPU seconds per property:
# Hypothesis spends ~0.5 ms per example on bytes and ~2 ms on JSON structures.
MANY = settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SOME = settings(MANY, max_examples=2000)


MUTATIONS = 20


def _reason(raw: bytes) -> str:
    with pytest.raises(InvalidEvent) as info:
        parse_event(raw, now=NOW)
    return info.value.reason


def _with(**changes: object) -> bytes:
    return json.dumps({**GOOD, **changes}).encode()


def test_a_good_event_parses() -> None:
    assert parse_event(_with(), now=NOW) == Event("e1", 5, 3, "play", 1_700_000_000.0)


@pytest.mark.parametrize("raw, reason", [
    # str.isdigit() accepts these, int() refuses them (ValueError escaped before)
    (_with(user_id="²"), "bad_user_id"),
    (_with(film_id="³"), "bad_film_id"),
    (_with(user_id="١٢"), "bad_user_id"),  # other scripts' digits: int() takes them, we do not
    # beyond int()'s 4,300-digit limit (ValueError), and beyond 64 bits
    (_with(user_id="9" * 5000), "bad_user_id"),
    (_with(user_id="9" * 20), "bad_user_id"),
    # unhashable event types (TypeError in the set test)
    (_with(event_type=["play"]), "unknown_event_type"),
    (_with(event_type={"play": 1}), "unknown_event_type"),
    (_with(event_type=7), "unknown_event_type"),
    # nesting past orjson's limit; a deep event_type that repr() could not print
    (b"[" * 100_000 + b"]" * 100_000, "too_large"),
    (b"[" * 5000 + b"]" * 5000, "malformed_json"),
    (b'{"event_id":"e","event_type":' + b"[" * 1000 + b"]" * 1000 + b"}", "unknown_event_type"),
    # null (Kafka tombstone) and empty values, oversized ones
    (None, "empty"),
    (b"", "empty"),
    (_with(session_id="x" * MAX_EVENT_BYTES), "too_large"),
    # invalid UTF-8, lone surrogates, a BOM
    (b'{"event_id": "\xff\xfe"}', "malformed_json"),
    (_with(event_id="\ud800"), "malformed_json"),
    (b"\xef\xbb\xbf" + _with(), "malformed_json"),
    # ISO dates at the edge of the calendar
    (_with(ts="9999-12-31T23:59:59-23:59"), "future_ts"),
    (_with(ts="0001-01-01T00:00:00+23:59"), "bad_ts"),
])
def test_known_crashers_are_rejected_with_a_reason(raw: bytes | None, reason: str) -> None:
    assert _reason(raw) == reason


@pytest.mark.parametrize("data, reason", [
    # what the stdlib json module (unlike orjson) lets through to validate()
    ({**GOOD, "watch_seconds": 10**400}, "bad_watch_seconds"),
    ({**GOOD, "rating": -(10**400)}, "bad_rating"),
    ({**GOOD, "ts": 10**400}, "bad_ts"),
    ({**GOOD, "ts": float("nan")}, "bad_ts"),
    ({**GOOD, "user_id": 10**400}, "bad_user_id"),
    ({**GOOD, "event_id": "a\udc00"}, "bad_event_id"),
    ({**GOOD, "source": "\ud800"}, "bad_source"),
    ({**GOOD, "position": 10**400}, "bad_position"),
])
def test_values_only_python_callers_can_pass_are_rejected(data: dict, reason: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        validate(data, now=NOW)
    assert info.value.reason == reason


def test_details_quote_at_most_a_short_piece_of_the_value() -> None:
    deep: list = []
    for _ in range(sys.getrecursionlimit() * 2):  # repr() of this raises RecursionError
        deep = [deep]
    for data in ({**GOOD, "user_id": "x" * 10_000}, {**GOOD, "user_id": deep}, {**GOOD, "position": deep},
                 {**GOOD, "rating": "y" * 10_000}, {**GOOD, "event_type": "z" * 10_000}):
        with pytest.raises(InvalidEvent) as info:
            validate(data, now=NOW)
        assert len(info.value.detail) < SHOWN_CHARS + 80, info.value.detail


TRIED: Counter = Counter()  # inputs each property fed to the parser, printed after the module


@pytest.fixture(scope="module", autouse=True)
def report_inputs_tried(request: pytest.FixtureRequest):
    """Print how many inputs the properties tried (the figure docs/ingestion.md quotes)."""
    yield
    if TRIED:
        capture = request.config.pluginmanager.get_plugin("capturemanager")
        with capture.global_and_fixture_disabled():
            print(f"\ntest_events: inputs tried: {sum(TRIED.values()):,} "
                  f"({', '.join(f'{kind} {count:,}' for kind, count in TRIED.items())})")


def _total(kind: str, run) -> None:
    """`run()` returns an Event or raises InvalidEvent with a short code; anything else fails the test."""
    TRIED[kind] += 1
    try:
        assert isinstance(run(), Event)
    except InvalidEvent as exc:
        assert exc.reason and exc.reason.isascii() and len(exc.reason) < 40


# text with lone surrogates too: the stdlib json module produces them, orjson refuses them
TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=30)
SCALAR = st.none() | st.booleans() | st.integers() | st.floats() | TEXT
JSON = st.recursive(
    SCALAR,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)
SMALL_JSON = SCALAR | st.lists(SCALAR, max_size=2) | st.dictionaries(st.text(max_size=4), SCALAR, max_size=2)
# Each field of an event: absent, a plausible value, or any JSON value (reaches the deep checks).
PLAUSIBLE = {
    "event_id": st.text(st.characters(codec=None, exclude_categories=()), min_size=1, max_size=70),
    "user_id": st.integers(-2, 2**64) | st.text("0123456789²١", max_size=25),
    "film_id": st.integers(-2, 2**64) | st.text("0123456789³", max_size=25),
    "event_type": st.sampled_from(["play", "page_view", "rate", "complete", "progress", "teleport"]),
    "ts": st.integers(0, 2 * 10**12) | st.floats() | st.sampled_from(
        ["2023-11-14T22:13:20Z", "2023-11-14", "9999-12-31T23:59:59-23:59", "garbage"]),
    "rating": st.floats(-1, 11) | st.integers(-(10**30), 10**30),
    "position": st.integers(-5, 20_000),
}
EVENT_DICTS = st.fixed_dictionaries({}, optional={
    name: (PLAUSIBLE[name] if name in PLAUSIBLE else st.floats() | st.text(max_size=300)) | SMALL_JSON
    for name in FIELDS
})
RATED = _with(rating=7, event_type="rate", session_id="s", position=3, watch_seconds=1.5)


@MANY
@given(st.binary(max_size=300))
@example(b"\x00")
@example(b'{"user_id": "\xc2\xb2"}')
def test_parse_event_is_total_over_arbitrary_bytes(raw: bytes) -> None:
    _total("bytes", lambda: parse_event(raw, now=NOW))


@SOME
@given(JSON)
def test_parse_and_validate_are_total_over_arbitrary_json_values(value: object) -> None:
    _total("json values", lambda: validate(value, now=NOW))
    try:
        raw = json.dumps(value).encode()
    except ValueError:  # NaN or recursion: json refuses, nothing to parse
        return
    _total("json values", lambda: parse_event(raw, now=NOW))


@SOME
@given(EVENT_DICTS)
def test_validate_is_total_over_events_with_arbitrary_field_values(data: dict) -> None:
    """The drawn fields alone, over a good event, and one at a time over a good event
    (everything else valid, so each field's own check is reached)."""
    _total("event fields", lambda: validate(data, now=NOW))
    _total("event fields", lambda: validate({**GOOD, **data}, now=NOW))
    for name, value in data.items():
        _total("event fields", lambda: validate({**GOOD, name: value}, now=NOW))


@MANY
@given(st.integers(0, 2**32))
def test_parse_event_is_total_over_mutated_valid_events(seed: int) -> None:
    """Byte flips, inserts and deletes on a valid event: MUTATIONS seeded variants per example."""
    rnd = random.Random(seed)
    for _ in range(MUTATIONS):
        raw = bytearray(RATED)
        for _ in range(rnd.randint(1, 4)):
            at = rnd.randrange(len(raw) + 1)
            action = rnd.choice(("flip", "insert", "delete"))
            if action == "flip" and at < len(raw):
                raw[at] = rnd.randrange(256)
            elif action == "insert":
                raw[at:at] = rnd.randbytes(rnd.randint(1, 8))
            else:
                del raw[at:at + rnd.randint(1, 8)]
        _total("mutated events", lambda: parse_event(bytes(raw), now=NOW))
