"""Routing of a batch: valid events pass, each bad one becomes a dead letter with its reason."""
from __future__ import annotations

import time
from typing import NamedTuple

from app.events import Event
from agents.deadletter import DeadLetter, reason_of, split_batch


class Msg(NamedTuple):
    key: bytes | None
    value: bytes
    topic: str = "interactions"
    partition: int = 2
    offset: int = 0


NOW = 1_700_000_100.0
GOOD = Event("a1", 5, 3, "play", 1_700_000_000.0)

BAD = {
    b"{oops": "malformed_json",
    b'"just a string"': "not_an_object",
    b'{"event_id": "b", "user_id": 5, "event_type": "sneeze", "film_id": 1, "ts": 1700000000000}': "unknown_event_type",
    b'{"event_id": "c", "user_id": 5, "event_type": "play", "film_id": 1, "ts": 1800000000000}': "future_ts",
    b'{"event_id": "d", "event_type": "play", "film_id": 1, "ts": 1700000000000}': "missing_user_id",
    b'{"event_id": "e", "user_id": 5, "event_type": "play", "ts": 1700000000000}': "missing_film_id",
    b'\xff\xfe': "malformed_json",
}


def test_bad_events_do_not_block_good_ones_and_keep_their_bytes() -> None:
    values = [GOOD.to_bytes(), *BAD, GOOD._replace(event_id="a2").to_bytes()]
    messages = [Msg(b"5", value, offset=i) for i, value in enumerate(values)]

    good, bad = split_batch(messages, now=NOW)

    assert [e.event_id for e in good] == ["a1", "a2"]
    assert good[0] == GOOD
    assert [(d.value, d.reason) for d in bad] == list(BAD.items())
    assert [d.offset for d in bad] == list(range(1, len(BAD) + 1))
    assert all(d.key == b"5" and d.topic == "interactions" and d.partition == 2 for d in bad)


def test_dead_letter_headers_carry_reason_and_source() -> None:
    letter = DeadLetter(b"5", b"{oops", "malformed_json", "", "interactions", 1, 42)
    headers = dict(letter.headers())
    assert reason_of(letter.headers()) == "malformed_json"
    assert headers["source_topic"] == b"interactions"
    assert (headers["source_partition"], headers["source_offset"]) == (b"1", b"42")


def test_future_check_uses_the_clock_when_now_is_not_given() -> None:
    future = GOOD._replace(ts=time.time() + 3600).to_bytes()
    _, bad = split_batch([Msg(b"5", future)])
    assert [d.reason for d in bad] == ["future_ts"]
