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
- `film_plays_hourly`: plays per film and hour of EVENT time, one entry per
  (film partition, hour): key "q:hour start" -> {"film id": plays} for the
  films of partition q. Trending is the sum of the last TRENDING_WINDOW /
  TRENDING_STEP hours (agents.trending). One entry per partition and
  hour (not per film and window) keeps the writes to a few per stats batch,
  and a read to a handful of lookups; hours older than TRENDING_EXPIRES +
  TRENDING_WINDOW are deleted by the film agent's sweep. (It replaced a
  Faust hopping-window table, whose six changelog writes per film and hour
  went through Faust's per-key producer path and made offset commits wait.)
"""
from __future__ import annotations

from datetime import timedelta

from app.main import app, settings

TRENDING_WINDOW = timedelta(hours=6)
TRENDING_STEP = timedelta(hours=1)
TRENDING_EXPIRES = timedelta(hours=12)


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
film_plays_hourly = app.Table(
    "film-plays-hourly", default=None, partitions=settings.topic_partitions, key_type=str,
)
