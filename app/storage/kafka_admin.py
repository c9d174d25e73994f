"""Kafka administration: topic creation with the configured partition count and
a metadata probe used to decide whether a broker answers.

Topics are created explicitly (not left to broker auto-creation) so that the
source topic and the DLQ get `settings.topic_partitions` partitions: Faust's
changelog topics are co-partitioned with the source topic.
"""
from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from typing import AsyncIterator, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, for_code

from app.settings import Settings

log = logging.getLogger(__name__)

TOPIC_ALREADY_EXISTS = 36


class KafkaAdminError(RuntimeError):
    """The broker refused or did not answer an administrative request."""


@asynccontextmanager
async def admin_client(settings: Settings, timeout: float | None = None) -> AsyncIterator[AIOKafkaAdminClient]:
    """A started admin client whose bootstrap and requests are bounded by `timeout`."""
    timeout = timeout or settings.network_timeout_s
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap,
        client_id=f"{settings.app_id}-admin",
        request_timeout_ms=int(timeout * 1000),
    )
    try:
        async with asyncio.timeout(timeout):
            await admin.start()
        yield admin
    finally:
        await admin.close()


async def drop_topics(settings: Settings, timeout: float = 10.0) -> None:
    """Delete the topics of throwaway settings (tests, benchmarks): the interactions/DLQ pair
    and its Faust app's internal ones (hundreds of leftover partitions slow every broker start)."""
    async with admin_client(settings, timeout=timeout) as admin:
        names = [
            t for t in await admin.list_topics()
            if t in (settings.topic_interactions, settings.topic_dlq) or t.startswith(f"{settings.app_id}-")
        ]
        if names:
            await admin.delete_topics(names, timeout_ms=int(timeout * 1000))


async def cluster_answers(settings: Settings, timeout: float = 3.0) -> bool:
    """True when a metadata request to the broker succeeds within `timeout`."""
    try:
        async with admin_client(settings, timeout) as admin:
            async with asyncio.timeout(timeout):
                await admin.describe_cluster()
        return True
    except (KafkaError, OSError, TimeoutError):
        return False


async def topic_partitions(admin: AIOKafkaAdminClient) -> dict[str, int]:
    """Partition count of every topic; asks for all topics so nothing gets auto-created."""
    return {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(None) if t["error_code"] == 0}


async def _committed_ends(admin: AIOKafkaAdminClient, consumer: AIOKafkaConsumer, group: str,
                          topics: list[str], partitions: int) -> bool:
    """True when `group` committed the end offset of every partition of `topics`."""
    tps = [TopicPartition(topic, p) for topic in topics for p in range(partitions)]
    committed = await admin.list_consumer_group_offsets(group, partitions=tps)
    ends = await consumer.end_offsets(tps)
    return all(committed.get(tp) is not None and committed[tp].offset >= ends[tp] for tp in tps)


async def group_caught_up(settings: Settings) -> bool:
    """True when the worker(s) processed every event so far (benchmarks and tests wait on it):
    the loader group committed the end of `interactions` and, with stats on, the Faust group
    (`app_id`) the end of the stats batch topics the loader had produced to by then."""
    timeout = settings.network_timeout_s * 6
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=int(timeout * 1000))
    await asyncio.wait_for(consumer.start(), timeout)
    try:
        async with admin_client(settings) as admin, asyncio.timeout(timeout * 2):
            # loader first: its commit follows the stats sends, so the batch topics' ends are final for it
            if not await _committed_ends(admin, consumer, settings.loader_group, [settings.topic_interactions],
                                         settings.topic_partitions):
                return False
            return not settings.stats_enabled or await _committed_ends(
                admin, consumer, settings.app_id, [settings.user_batches_topic, settings.film_batches_topic],
                settings.topic_partitions)
    finally:
        await consumer.stop()


async def ensure_topics(settings: Settings, partitions: int | None = None, extra: Sequence[str] = ()) -> list[str]:
    """Create the interactions topic, its DLQ and the `extra` topics if missing; returns the names created.

    Idempotent: existing topics are left alone; one with fewer partitions than
    configured gets a warning (Kafka cannot shrink, and growing changes key placement).
    """
    wanted = partitions or settings.topic_partitions
    names = [settings.topic_interactions, settings.topic_dlq, *extra]
    timeout = settings.network_timeout_s
    try:
        async with admin_client(settings, timeout) as admin:
            async with asyncio.timeout(timeout * 2):
                existing = await topic_partitions(admin)
                missing = [n for n in names if n not in existing]
                created = await _create(admin, missing, wanted, int(timeout * 1000)) if missing else []
    except (KafkaError, OSError, TimeoutError) as exc:
        raise KafkaAdminError(f"Kafka at {settings.kafka_bootstrap}: {exc!r}") from exc
    for name in names:
        if name in existing and existing[name] < wanted:
            log.warning(
                "topic %s has %d partitions, fewer than the configured %d (TOPIC_PARTITIONS); "
                "consumers scale only to %d", name, existing[name], wanted, existing[name],
            )
    return created


async def _create(admin: AIOKafkaAdminClient, names: list[str], partitions: int, timeout_ms: int) -> list[str]:
    response = await admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1) for name in names], timeout_ms=timeout_ms,
    )
    created = []
    for topic, code, *message in response.topic_errors:
        if code == 0:
            created.append(topic)
            log.info("created topic %s with %d partitions", topic, partitions)
        elif code != TOPIC_ALREADY_EXISTS:  # a concurrent creator won the race: fine
            raise for_code(code)(f"could not create topic {topic}: {message[0] if message else ''}")
    return created
