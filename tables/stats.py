"""Stream state of the stats agents (declarations only; agents/stats.py fills them).

- `user_stats`: user id -> dict (agents.folds.apply_user, plus the source
  offsets applied and the write time, agents.folds.fold_users); keyed like
  the source topic (key = user id), so no re-partitioning is needed; written
  per batch, its changelog partition is chosen by key (see below).
- `film_stats`: film id -> dict (agents.folds.apply_film, plus the source
  offsets applied), fed from the film-keyed `film_batches_topic`.
- `film_viewers`: "film_id:user_id" -> [source partition, source offset,
  written at] of the play that made the user a viewer: an exact
  unique-viewer set stored as one small entry per (film, user) pair instead
  of a growing set per film, so no value ever gets big.
- `user_stats` and `film_viewers` entries expire after STATS_TTL_DAYS
  without a write (swept by the agents, agents.stats.Expiry).
- `film_plays_window`: plays per film in hopping windows over EVENT time,
  expiring old windows; trending is read from it through `film_plays_trailing`.
  A stats message carries a whole batch, so the stream event has no single
  time: writers and readers pass the time explicitly as an `EventTime` in the
  "event" argument (`WindowSet.apply(op, n, EventTime(ts))`, `.items(EventTime(ts))`),
  which the windowed table hands to its `relative_to` callable below.
"""
from __future__ import annotations

from datetime import timedelta
from typing import NamedTuple

from app.main import app, settings

TRENDING_WINDOW = timedelta(hours=6)
TRENDING_STEP = timedelta(hours=1)
TRENDING_EXPIRES = timedelta(hours=12)


class EventTime(NamedTuple):
    """The event time a windowed read or write is relative to (passed where Faust takes an event)."""

    ts: float


def _event_time(at: EventTime) -> float:
    """Windows follow event time, not arrival."""
    return at.ts


def _trailing_time(at: EventTime) -> float:
    """Event time moved back so that the window read is the one ENDING near it."""
    return at.ts - (TRENDING_WINDOW - TRENDING_STEP).total_seconds()


# use_partitioner: the changelog partition comes from the key, not from the
# event being processed. The key serializes to the same bytes as the source message key (b"123") and
# both producers use Kafka's default (murmur2) partitioner: same partition.
user_stats = app.Table(
    "user-stats", default=None, partitions=settings.topic_partitions, key_type=int, use_partitioner=True,
)
film_stats = app.Table(
    "film-stats", default=None, partitions=settings.topic_partitions, key_type=int,
)
film_viewers = app.Table(
    "film-viewers", default=None, partitions=settings.topic_partitions, key_type=str,
)
# No key_type here: the changelog key of a windowed table is (film_id, (start, end)),
# JSON-encoded as a list; `key_type=int` made every changelog recovery (standby
# replicas, a partition moving to another worker, a restart) fail on int(list)
# and the worker never left recovery (tests/integration/test_multiworker.py).
film_plays_window = (
    app.Table(
        "film-plays-window", default=int, partitions=settings.topic_partitions,
    )
    .hopping(TRENDING_WINDOW, TRENDING_STEP, expires=TRENDING_EXPIRES, key_index=True)
    .relative_to(_event_time)
)
# Read side of the same table: `items()` gives each film's plays in the window
# covering the last TRENDING_WINDOW up to the current action (on the write side
# `current()` is the newest window, which has barely started).
film_plays_trailing = film_plays_window.clone(relative_to=_trailing_time)
