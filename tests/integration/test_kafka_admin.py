"""Topic creation against the real broker: idempotent, partition count as
configured, a warning when an existing topic has fewer partitions."""
from __future__ import annotations

import logging

import pytest

from app.settings import Settings
from app.storage.kafka_admin import KafkaAdminError, admin_client, cluster_answers, ensure_topics, topic_partitions

pytestmark = pytest.mark.integration


async def test_topics_are_created_once_with_the_configured_partitions(
    kafka_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    s = kafka_settings.with_overrides(topic_partitions=2)
    assert sorted(await ensure_topics(s)) == sorted([s.topic_interactions, s.topic_dlq])
    async with admin_client(s) as admin:
        counts = await topic_partitions(admin)
    assert (counts[s.topic_interactions], counts[s.topic_dlq]) == (2, 2)

    assert await ensure_topics(s) == []  # second run: nothing to do, no error

    with caplog.at_level(logging.WARNING, logger="app.storage.kafka_admin"):
        assert await ensure_topics(s, partitions=3) == []
    warned = [r.getMessage() for r in caplog.records]
    assert any(f"topic {s.topic_interactions} has 2 partitions, fewer than the configured 3" in m for m in warned)


async def test_the_probe_tells_a_broker_from_a_closed_port(kafka_settings: Settings) -> None:
    assert await cluster_answers(kafka_settings, timeout=5)
    nowhere = kafka_settings.with_overrides(kafka_broker="kafka://127.0.0.1:1")
    assert not await cluster_answers(nowhere, timeout=2)


async def test_an_unreachable_broker_is_a_readable_error(kafka_settings: Settings) -> None:
    nowhere = kafka_settings.with_overrides(kafka_broker="kafka://127.0.0.1:1", network_timeout_s=1.0)
    with pytest.raises(KafkaAdminError, match="Kafka at 127.0.0.1:1"):
        await ensure_topics(nowhere)
