"""Cleanup shared by Kafka integration tests: topics made for one test are deleted."""
from __future__ import annotations

from app.settings import Settings
from app.storage.kafka_admin import admin_client


async def drop_topics(settings: Settings) -> None:
    """Delete the test's interactions and DLQ topics (missing ones are fine)."""
    async with admin_client(settings, timeout=10) as admin:
        await admin.delete_topics([settings.topic_interactions, settings.topic_dlq], timeout_ms=10_000)
