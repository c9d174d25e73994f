"""Routing of a batch: valid events pass, each bad one becomes a dead letter with its reason,
any exception costs one record, and every dead letter fits a Kafka message."""
from __future__ import annotations

import asyncio
import time
from typing import NamedTuple

import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError

from app import event_columns
from app.events import MAX_EVENT_BYTES, Event
from agents import deadletter
from agents.deadletter import DLQ_KEY_MAX, DLQ_VALUE_MAX, DeadLetter, dead_letter, reason_of, split_batch
from agents.retry import Fatal


class Msg(NamedTuple):
    key: bytes | None
    value: bytes | None
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
    b'{"event_id": "f", "user_id": "\xc2\xb2", "event_type": "play", "film_id": 1, "ts": 1700000000000}': "bad_user_id",
}


def test_bad_events_do_not_block_good_ones_and_keep_their_bytes() -> None:
    values = [GOOD.to_bytes(), *BAD, GOOD._replace(event_id="a2").to_bytes()]
    messages = [Msg(b"5", value, offset=i) for i, value in enumerate(values)]

    split = split_batch(messages, now=NOW)

    assert [e.event_id for e in split.columns.events()] == ["a1", "a2"]
    assert split.columns.events()[0] == GOOD
    assert [m.offset for m in split.messages] == [0, len(values) - 1]
    assert [(d.value, d.reason) for d in split.rejects] == list(BAD.items())
    assert [d.offset for d in split.rejects] == list(range(1, len(BAD) + 1))
    assert all(d.key == b"5" and d.topic == "interactions" and d.partition == 2 for d in split.rejects)
    assert all(d.truncated == () and "truncated" not in dict(d.headers()) for d in split.rejects)


def test_any_exception_from_one_record_dead_letters_it_as_internal(monkeypatch) -> None:
    real = event_columns.parse_event

    def buggy(raw, now=None):
        if raw == b"boom":
            raise ZeroDivisionError("a bug of ours")
        return real(raw, now)

    monkeypatch.setattr(event_columns, "parse_event", buggy)
    split = split_batch([Msg(b"5", GOOD.to_bytes()), Msg(b"5", b"boom", offset=1)], now=NOW)
    assert split.columns.events() == [GOOD]
    [letter] = split.rejects
    headers = dict(letter.headers())
    assert (letter.reason, letter.offset, letter.value) == ("internal", 1, b"boom")
    assert headers["exception"] == b"ZeroDivisionError"
    assert headers["detail"] == b"ZeroDivisionError: a bug of ours"


def test_null_and_oversized_values_are_dead_lettered_and_cut_to_fit() -> None:
    huge = b'{"event_id": "x", "user_id": "' + b"9" * 520_000 + b'"}'
    split = split_batch([Msg(None, None), Msg(b"k" * 5000, huge, offset=1), Msg(b"5", b"x" * 2_000_000, offset=2)])
    tombstone, bad_field, meg = split.rejects
    assert (tombstone.reason, tombstone.value, dict(tombstone.headers()).get("truncated")) == ("empty", None, None)
    for letter, size in ((bad_field, len(huge)), (meg, 2_000_000)):
        headers = dict(letter.headers())
        assert letter.reason == "too_large"
        assert len(letter.value) == DLQ_VALUE_MAX == MAX_EVENT_BYTES
        assert headers["original_bytes"] == str(size).encode()
    assert dict(bad_field.headers())["truncated"] == b"value,key" and len(bad_field.key) == DLQ_KEY_MAX
    assert dict(meg.headers())["truncated"] == b"value"


def test_a_dead_letter_always_fits_a_kafka_message() -> None:
    letter = dead_letter(Msg(b"k" * 10**6, b"v" * 10**6), "bad_user_id", "d" * 10**6)
    size = len(letter.key) + len(letter.value) + sum(len(k) + len(v) for k, v in letter.headers())
    assert size < 70 * 1024  # Kafka's default limit is 1 MB
    assert dict(letter.headers())["detail"].endswith(b"(cut, 1000000 chars)")


def test_dead_letter_headers_carry_reason_and_source() -> None:
    letter = DeadLetter(b"5", b"{oops", "malformed_json", "", "interactions", 1, 42)
    headers = dict(letter.headers())
    assert reason_of(letter.headers()) == "malformed_json"
    assert headers["source_topic"] == b"interactions"
    assert (headers["source_partition"], headers["source_offset"]) == (b"1", b"42")


def test_future_check_uses_the_clock_when_now_is_not_given() -> None:
    future = GOOD._replace(ts=time.time() + 3600).to_bytes()
    split = split_batch([Msg(b"5", future)])
    assert [d.reason for d in split.rejects] == ["future_ts"]


class FakeTopic:
    """Stands in for the Faust topic object (the unit under test is `publish`'s error handling)."""

    def __init__(self, errors: list[Exception]) -> None:
        self.errors = errors
        self.sent: list[bytes] = []

    def get_topic_name(self) -> str:
        return "dlq"

    async def send(self, key, value, headers):
        if self.errors:
            raise self.errors.pop(0)
        self.sent.append(value)
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


async def test_publish_retries_transient_errors_and_stops_on_a_size_refusal() -> None:
    letters = [dead_letter(Msg(b"5", b"{oops"), "malformed_json", "")]
    topic = FakeTopic([KafkaConnectionError()])
    await deadletter.publish(topic, letters)
    assert topic.sent == [b"{oops"]
    with pytest.raises(Fatal, match="max.message.bytes"):
        await deadletter.publish(FakeTopic([MessageSizeTooLargeError()]), letters)
