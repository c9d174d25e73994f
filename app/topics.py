"""Kafka topics of the app. Values are raw bytes: the loader validates them itself
(app.events) so a malformed event can be dead-lettered with its original bytes."""
from __future__ import annotations

from typing import NamedTuple

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


class FilmAction(NamedTuple):
    """What the film-keyed stats need of an event: compact on the wire (ASCII CSV)."""

    user_id: int
    film_id: int
    event_type: str
    ts: float
    rating: float = 0.0

    def to_bytes(self) -> bytes:
        return f"{self.user_id},{self.film_id},{self.event_type},{self.ts!r},{self.rating!r}".encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> "FilmAction":
        user_id, film_id, event_type, ts, rating = raw.decode().split(",")
        return cls(int(user_id), int(film_id), event_type, float(ts), float(rating))


# Film events re-keyed by film id (what `group_by(film_id)` does), so the per-film
# tables live on the worker that owns the film's partition. Internal: Faust
# creates it with `topic_partitions`; named after the app id so apps do not share it.
film_actions_topic = app.topic(
    f"{settings.app_id}-film-actions",
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
    partitions=settings.topic_partitions,
    internal=True,
)
