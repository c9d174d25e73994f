"""Dead letters: split a batch into valid events and rejects, and publish the rejects.

DLQ format (documented in docs/ingestion.md): the message VALUE is the original
bytes, untouched, and the KEY is the original key, so a fixed event can be
replayed as is. Why it was rejected travels in Kafka headers:
`reason` (short code from `app.events.InvalidEvent`), `detail`,
`source_topic`, `source_partition`, `source_offset`.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Iterable, NamedTuple, Protocol, Sequence

from app import telemetry
from app.events import Event, InvalidEvent, parse_event
from agents.retry import retry_forever

log = logging.getLogger(__name__)


class RawMessage(Protocol):
    """What we read from a consumed message (aiokafka's ConsumerRecord has these)."""

    key: bytes | None
    value: bytes
    topic: str
    partition: int
    offset: int


class DeadLetter(NamedTuple):
    key: bytes | None
    value: bytes
    reason: str
    detail: str
    topic: str
    partition: int
    offset: int

    def headers(self) -> list[tuple[str, bytes]]:
        return [
            ("reason", self.reason.encode()),
            ("detail", self.detail.encode()),
            ("source_topic", self.topic.encode()),
            ("source_partition", str(self.partition).encode()),
            ("source_offset", str(self.offset).encode()),
        ]


def split_batch(messages: Iterable[RawMessage], now: float | None = None) -> tuple[list[Event], list[DeadLetter]]:
    """Parse every message; valid ones become `Event`s, the others `DeadLetter`s.

    A bad message never stops the batch: each is judged on its own.
    """
    good: list[Event] = []
    bad: list[DeadLetter] = []
    for message in messages:
        try:
            good.append(parse_event(message.value, now))
        except InvalidEvent as exc:
            bad.append(
                DeadLetter(message.key, message.value, exc.reason, exc.detail,
                           message.topic, message.partition, message.offset)
            )
    return good, bad


def reason_of(headers: Sequence[tuple[str, bytes]] | dict) -> str:
    """The `reason` header of a DLQ message (for readers and tests)."""
    items = headers.items() if isinstance(headers, dict) else headers
    return next((value.decode() for name, value in items if name == "reason"), "")


async def publish(topic, letters: Sequence[DeadLetter]) -> None:
    """Send `letters` to the DLQ topic and wait until the broker has them all.

    Retried until done: the source batch is committed after this returns.
    """
    if not letters:
        return

    async def send_all() -> None:
        futures = [
            await topic.send(key=letter.key, value=letter.value, headers=letter.headers()) for letter in letters
        ]
        await asyncio.gather(*futures)

    await retry_forever(send_all, f"DLQ send of {len(letters)} events", log)
    for letter in letters:
        telemetry.EVENTS_DEAD_LETTERED.labels(letter.reason).inc()
