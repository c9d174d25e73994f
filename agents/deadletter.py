"""Dead letters: split a batch into valid events and rejects, and publish the rejects.

DLQ format (documented in docs/ingestion.md): the message VALUE is the original
bytes and the KEY is the original key, so a fixed event can be replayed as is.
Why it was rejected travels in Kafka headers: `reason` (short code from
`app.events.InvalidEvent`, or `internal` / `rejected_by_clickhouse`),
`detail`, `source_topic`, `source_partition`, `source_offset`, and
`exception` (class name) for `internal`.

Every dead letter fits a Kafka message whatever came in: the value is cut to
DLQ_VALUE_MAX bytes (only `too_large` events are that big: the parser refuses
them unread), the key to DLQ_KEY_MAX, the detail to DETAIL_MAX characters; a
cut value or key is named in the `truncated` header (`value`, `key`) and the
value's original size is in `original_bytes`.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Iterable, NamedTuple, Protocol, Sequence

from app import telemetry
from app.event_columns import EventColumns, parse_columns
from app.events import MAX_EVENT_BYTES, InvalidEvent
from agents.records import RawRecords
from agents.retry import KAFKA_PERMANENT, Fatal, kafka_permanent, retry_forever

log = logging.getLogger(__name__)

DLQ_VALUE_MAX = MAX_EVENT_BYTES
DLQ_KEY_MAX = 1024
DETAIL_MAX = 300
INTERNAL = "internal"


class RawMessage(Protocol):
    """What we read from a consumed message (aiokafka's ConsumerRecord and `agents.records.Record` have these)."""

    key: bytes | None
    value: bytes | None
    topic: str
    partition: int
    offset: int


class DeadLetter(NamedTuple):
    key: bytes | None
    value: bytes | None
    reason: str
    detail: str
    topic: str
    partition: int
    offset: int
    exception: str = ""  # class name, for `internal`
    truncated: tuple[str, ...] = ()  # parts cut to fit ("value", "key")
    original_bytes: int = 0  # size of the value before it was cut

    def headers(self) -> list[tuple[str, bytes]]:
        out = [
            ("reason", self.reason.encode()),
            ("detail", self.detail.encode("utf-8", "replace")),
            ("source_topic", self.topic.encode()),
            ("source_partition", str(self.partition).encode()),
            ("source_offset", str(self.offset).encode()),
        ]
        if self.exception:
            out.append(("exception", self.exception.encode()))
        if self.truncated:
            out.append(("truncated", ",".join(self.truncated).encode()))
        if "value" in self.truncated:
            out.append(("original_bytes", str(self.original_bytes).encode()))
        return out


def _cut_text(text: str, limit: int = DETAIL_MAX) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... (cut, {len(text)} chars)"


def dead_letter(message: RawMessage, reason: str, detail: str, exception: str = "") -> DeadLetter:
    """The dead letter of `message`, cut so that it always fits a Kafka message."""
    key, value = message.key, message.value
    truncated = []
    original = len(value) if value else 0
    if value is not None and len(value) > DLQ_VALUE_MAX:
        value = value[:DLQ_VALUE_MAX]
        truncated.append("value")
    if key is not None and len(key) > DLQ_KEY_MAX:
        key = key[:DLQ_KEY_MAX]
        truncated.append("key")
    return DeadLetter(key, value, reason, _cut_text(detail), message.topic, message.partition, message.offset,
                      exception, tuple(truncated), original)


def _describe(exc: BaseException) -> str:
    try:
        return f"{type(exc).__name__}: {exc}"
    except Exception:  # an exception whose str() fails
        return type(exc).__name__


class Split(NamedTuple):
    """A batch after parsing: the valid events as columns, the message of each (same order), the rejects."""

    columns: EventColumns
    messages: RawRecords
    rejects: list[DeadLetter]


def split_batch(messages: Iterable[RawMessage] | RawRecords, now: float | None = None) -> Split:
    """Parse every message (app.event_columns: per column, `parse_event` for anything unusual);
    valid ones become rows of `columns`, the others `DeadLetter`s.

    A bad message never stops the batch: each is judged on its own, and any
    exception from one (a bug of ours, parsing is meant to be total) costs
    that one message, dead-lettered as `internal` with the exception class.
    """
    records = RawRecords.from_messages(messages)
    parsed = parse_columns(records.values, now)
    bad: list[DeadLetter] = []
    for i, exc in parsed.rejects:
        message = records[i]
        if isinstance(exc, InvalidEvent):
            bad.append(dead_letter(message, exc.reason, exc.detail))
        else:
            log.error("internal error parsing %s[%d]@%d: dead-lettered", message.topic, message.partition,
                      message.offset, exc_info=exc)
            bad.append(dead_letter(message, INTERNAL, _describe(exc), exception=type(exc).__name__))
    kept = records if not bad else records.take(parsed.positions)
    return Split(parsed.columns, kept, bad)


def reason_of(headers: Sequence[tuple[str, bytes]] | dict) -> str:
    """The `reason` header of a DLQ message (for readers and tests)."""
    items = headers.items() if isinstance(headers, dict) else headers
    return next((value.decode() for name, value in items if name == "reason"), "")


async def publish(topic, letters: Sequence[DeadLetter]) -> None:
    """Send `letters` to the DLQ topic and wait until the broker has them all.

    Retried until done (the source batch is committed after this returns),
    except when the broker refuses a letter for good (too large, no such
    topic, not authorised): then `Fatal`, as nothing can be committed past it.
    """
    if not letters:
        return

    async def send_all() -> None:
        futures = [
            await topic.send(key=letter.key, value=letter.value, headers=letter.headers()) for letter in letters
        ]
        await asyncio.gather(*futures)

    try:
        await retry_forever(send_all, f"DLQ send of {len(letters)} events", log, permanent=kafka_permanent)
    except KAFKA_PERMANENT as exc:
        largest = max(len(letter.value or b"") for letter in letters)
        raise Fatal(f"the broker refuses dead letters on {topic.get_topic_name()} ({_describe(exc)}; largest "
                    f"value {largest} bytes): check the topic's max.message.bytes and ACLs") from exc
    for letter in letters:
        telemetry.EVENTS_DEAD_LETTERED.labels(letter.reason).inc()
