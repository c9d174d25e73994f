"""Fixture shared by the simulator/import integration tests: one fresh ClickHouse
database and one pair of fresh topics in the same Settings."""
from __future__ import annotations

import pytest

from app.settings import Settings


@pytest.fixture
def pipeline_settings(clickhouse_settings: Settings, kafka_settings: Settings) -> Settings:
    return clickhouse_settings.with_overrides(
        topic_interactions=kafka_settings.topic_interactions, topic_dlq=kafka_settings.topic_dlq
    )
