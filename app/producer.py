"""Producing interaction events to Kafka, for the site, the simulator and the importers.

One aiokafka producer tuned for throughput and safety: batches with a short
linger, `acks="all"` and idempotence (no duplicates from producer retries; the
loader still deduplicates by event_id because delivery is at-least-once end to
end), and a request timeout from the settings so nothing waits forever.
Messages are keyed by the user id so one user's events stay in order on one
partition.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from types import TracebackType
from typing import AsyncIterable, AsyncIterator, Iterable

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from tqdm import tqdm

from app.events import Event
from app.settings import Settings

log = logging.getLogger(__name__)

# Messages in flight at most: bounds memory while keeping the pipeline full.
WINDOW = 5_000


def message_key(user_id: int) -> bytes:
    """The Kafka key of a user's events (docs/design.md: key = user id)."""
    return str(user_id).encode()


Message = tuple[bytes | None, bytes]


def to_message(event: Event) -> tuple[bytes, bytes]:
    """(key, value) of an event as the site sends it."""
    return message_key(event.user_id), event.to_bytes()


class ProducerError(RuntimeError):
    """Kafka could not be reached or did not acknowledge a message."""


class EventProducer:
    """Async context manager: `async with EventProducer(settings) as p: await p.send(e)`."""

    def __init__(
        self,
        settings: Settings,
        topic: str | None = None,
        linger_ms: int = 20,
        max_batch_bytes: int = 256 * 1024,
        idempotent: bool = True,
    ) -> None:
        self.settings = settings
        self.topic = topic or settings.topic_interactions
        self._timeout_s = settings.network_timeout_s
        self._producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap,
            client_id=f"{settings.app_id}-producer",
            acks="all",
            enable_idempotence=idempotent,
            linger_ms=linger_ms,
            max_batch_size=max_batch_bytes,
            request_timeout_ms=int(max(self._timeout_s * 6, 30.0) * 1000),
            retry_backoff_ms=200,
        )
        self.sent = 0

    async def __aenter__(self) -> "EventProducer":
        try:
            await asyncio.wait_for(self._producer.start(), timeout=self._timeout_s * 2)
        except (KafkaError, OSError, asyncio.TimeoutError) as exc:
            await self._producer.stop()
            raise ProducerError(f"cannot connect to Kafka at {self.settings.kafka_bootstrap}: {exc!r}") from None
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Flush what is buffered (stop() waits for in-flight batches), then disconnect."""
        await self._producer.stop()

    async def send_raw(self, key: bytes | None, value: bytes) -> None:
        """One message as given (tests use it for malformed input); waits for the ack."""
        await self._await(await self._producer.send(self.topic, value=value, key=key))
        self.sent += 1

    async def send(self, event: Event) -> None:
        """One event, keyed by its user id; waits for the ack."""
        await self.send_raw(*to_message(event))

    async def send_many(self, events: Iterable[Event]) -> int:
        """Events pipelined in batches; returns how many were acknowledged."""
        return await self.send_messages(map(to_message, events))

    async def send_messages(self, messages: Iterable[Message] | AsyncIterable[Message]) -> int:
        """(key, value) pairs pipelined: at most WINDOW unacknowledged at a time.

        Returns how many were acknowledged; raises ProducerError on the first failure.
        """
        pending: deque[asyncio.Future] = deque()
        count = 0
        async for key, value in messages if isinstance(messages, AsyncIterable) else _as_async(messages):
            pending.append(await self._producer.send(self.topic, value=value, key=key))
            if len(pending) >= WINDOW:
                await self._await(pending.popleft())
                count += 1
        while pending:
            await self._await(pending.popleft())
            count += 1
        self.sent += count
        return count

    async def _await(self, future: asyncio.Future) -> None:
        try:
            await future
        except KafkaError as exc:
            raise ProducerError(f"Kafka did not acknowledge a message on {self.topic}: {exc!r}") from None


async def _as_async(items: Iterable[Message]) -> AsyncIterator[Message]:
    for item in items:
        yield item


async def _paced(
    messages: Iterable[Message] | AsyncIterable[Message], rate: float, bar: tqdm
) -> AsyncIterator[Message]:
    """The messages, counted on the progress bar, held back to `rate` per second when > 0."""
    started, n = time.monotonic(), 0
    async for message in messages if isinstance(messages, AsyncIterable) else _as_async(messages):
        if rate and (ahead := started + n / rate - time.monotonic()) > 0.005:
            await asyncio.sleep(ahead)
        yield message
        n += 1
        bar.update(1)


async def produce_messages(
    settings: Settings,
    messages: Iterable[Message] | AsyncIterable[Message],
    total: int,
    rate: float = 0.0,
    progress: bool = True,
    desc: str = "produce",
) -> int:
    """Send (key, value) pairs with a progress bar; `rate` > 0 paces to that many per second.

    Returns how many were acknowledged. For the simulator and importers,
    where the operator wants to see long runs advance.
    """
    if rate < 0:
        raise ValueError(f"rate must be >= 0 messages/s, got {rate}")
    with tqdm(total=total, desc=desc, unit="ev", disable=not progress, mininterval=1.0) as bar:
        async with EventProducer(settings) as producer:
            return await producer.send_messages(_paced(messages, rate, bar))


def produce_sync(settings: Settings, events: Iterable[Event], topic: str | None = None) -> int:
    """Blocking convenience for scripts: send events and return how many were acknowledged."""

    async def _run() -> int:
        async with EventProducer(settings, topic=topic) as producer:
            return await producer.send_many(events)

    return asyncio.run(_run())
