"""Names defined once: event types, event fields, ClickHouse columns.

Everything that names a column or an event type imports it from here, so the
event contract (docs/design.md, "Event schema"), the loader, the trainer and the analytics agree.
"""
from __future__ import annotations

EVENT_TYPES: tuple[str, ...] = (
    "page_view",
    "impression",
    "click",
    "play",
    "progress",
    "complete",
    "rate",
    "watchlist_add",
)
# Event types that say something about taste for a film (used by stats/training).
FILM_EVENT_TYPES = frozenset(t for t in EVENT_TYPES if t != "page_view")
WATCH_EVENT_TYPES = frozenset({"play", "progress", "complete"})

# Column order of ClickHouse `interactions` and of `Event` (app/events.py).
INTERACTION_COLUMNS: tuple[str, ...] = (
    "event_id",
    "user_id",
    "film_id",
    "event_type",
    "ts",
    "session_id",
    "watch_seconds",
    "duration_seconds",
    "rating",
    "source",
    "model_version",
    "position",
)

FILM_COLUMNS: tuple[str, ...] = ("film_id", "title", "genres", "release_date", "duration_seconds")

# Sentinels stored in ClickHouse for absent optional values (no Nullable: it is
# slow on old servers and every reader would need to handle NULL).
NO_RATING = 0.0
NO_POSITION = -1
