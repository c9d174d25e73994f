"""Kafka topics of the app. Values are raw bytes: the loader validates them itself
(app.events) so a malformed event can be dead-lettered with its original bytes."""
from __future__ import annotations

from app.main import app, settings

interactions_topic = app.topic(
    settings.topic_interactions,
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
    partitions=settings.topic_partitions,
)

dlq_topic = app.topic(
    settings.topic_dlq,
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
    partitions=settings.topic_partitions,
)
