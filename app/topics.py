"""Kafka topics the Faust app sends to or consumes. Values are raw bytes.

`interactions` itself is read by the loader service's own aiokafka consumer
(agents/loader.py), not by Faust, so it is not declared here.
"""
from __future__ import annotations

from app.main import app, settings


def _raw_topic(name: str, internal: bool = False):
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw",
                     partitions=settings.topic_partitions, internal=internal)


# Rejected events, original bytes (docs/ingestion.md, agents/deadletter.py).
dlq_topic = _raw_topic(settings.topic_dlq)
# Stats batches (agents/batches.py): partition p of user-batches carries source
# partition p's events; film-batches partition q the actions of films hashing to q.
# Created at start-up with TOPIC_PARTITIONS partitions (app.main), named after the app id.
user_batches_topic = _raw_topic(settings.user_batches_topic, internal=True)
film_batches_topic = _raw_topic(settings.film_batches_topic, internal=True)
