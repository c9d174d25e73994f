"""Redis key names and value codecs shared by the publisher, the stats agent and the web.

Layout (docs/design.md, "Storage contracts"):

    recs:current                 -> version string; switched only after a full publish
    recs:versions                -> sorted set of published versions, score = publish time
    recs:{v}:meta                -> JSON: version, trained_at, metrics, sizes
    recs:{v}:user:{user_id}      -> ranked list (codec below), top-N per user
    recs:{v}:similar:{film_id}   -> ranked list, similar films
    recs:{v}:popular             -> ranked list, the Popular baseline of that run
    recs:popular                 -> ranked list, Popular of the latest run whatever its gate said
                                    (readers fall back to it: never an empty list while there is data)
    recs:trending                -> ranked list, Trending (time-decayed) of the latest run: the
                                    fallback while `live:trending` is empty
    recs:{v}:factors             -> npz bytes: item ids + item factors + regularization (fold-in)
    recs:{v}:ranking             -> npz bytes of a two-level version: ranker (LightGBM text), film feature
                                    snapshot, item factors, similar films (app.recsys.ranking.online)
    live:user:{user_id}          -> msgpack [events, ratings, rating_sum, last_seen]: the stats agent's
                                    per-user counts, the live features of request-time ranking
    films:title                  -> hash film_id -> title
    live:recent:{user_id}        -> list of film ids the user watched recently (newest first)
    live:trending                -> ranked list computed by the stats agent
    live:trending:parts          -> hash worker -> msgpack [updated_at, film_ids, scores]: each
                                    worker's top films (it owns only some film partitions);
                                    `live:trending` is their merge
    lock:retrain                 -> retrain lock
    exp:active                   -> JSON of the running experiment (app.experiments.model.Experiment.to_json);
                                    absent when none runs. ClickHouse `experiments` is the truth, this the mirror
                                    serving reads; its control and challenger versions must not expire
    lock:experiments             -> held while an experiment changes state (one running experiment at a time)
    lock:rollout                 -> held while the running experiments are evaluated (app.experiments.rollout)

Ranked lists are msgpack `[[film_id, ...], [score, ...]]`: compact, and decoded
with one call.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import msgpack

CURRENT = "recs:current"
VERSIONS = "recs:versions"
FILM_TITLES = "films:title"
TRENDING = "live:trending"
POPULAR_LATEST = "recs:popular"
TRENDING_LATEST = "recs:trending"
TRENDING_PARTS = "live:trending:parts"
RETRAIN_LOCK = "lock:retrain"
EXPERIMENT_ACTIVE = "exp:active"
EXPERIMENTS_LOCK = "lock:experiments"
ROLLOUT_LOCK = "lock:rollout"
RECENT_MAX = 50
LIVE_USER_FIELDS = ("events", "ratings", "rating_sum", "last_seen")  # `live:user:{id}`, in order


def meta(version: str) -> str:
    return f"recs:{version}:meta"


def user_recs(version: str, user_id: int) -> str:
    return f"recs:{version}:user:{user_id}"


def similar(version: str, film_id: int) -> str:
    return f"recs:{version}:similar:{film_id}"


def popular(version: str) -> str:
    return f"recs:{version}:popular"


def factors(version: str) -> str:
    return f"recs:{version}:factors"


def ranking(version: str) -> str:
    return f"recs:{version}:ranking"


def recent(user_id: int) -> str:
    return f"live:recent:{user_id}"


def live_user(user_id: int) -> str:
    return f"live:user:{user_id}"


def version_pattern(version: str) -> str:
    """Glob matching every key of one version (for expiry and deletion)."""
    return f"recs:{version}:*"


def encode_ranked(film_ids: Sequence[int], scores: Sequence[float]) -> bytes:
    return msgpack.packb([[int(f) for f in film_ids], [round(float(s), 5) for s in scores]])


def decode_ranked(raw: bytes | None) -> tuple[list[int], list[float]]:
    if not raw:
        return [], []
    film_ids, scores = msgpack.unpackb(raw)
    return film_ids, scores


def encode_live_user(events: int, ratings: int, rating_sum: float, last_seen: float) -> bytes:
    """`live:user:{id}`: a user's live counts (msgpack list, ~20 bytes)."""
    return msgpack.packb([int(events), int(ratings), float(rating_sum), float(last_seen)])


def live_user_counts(record: Mapping[str, Any]) -> dict[str, float]:
    """The counts of `live:user:{id}` from a `user_stats` record (agents.folds.apply_user): defined
    once for the mirror (agents.live) and the worker's web, which reads its own table (app.web.recent)."""
    return {"events": record["events"], "ratings": record["ratings"], "rating_sum": record["rating_milli"] / 1000,
            "last_seen": record["last_seen"]}


def decode_live_user(raw: bytes | None) -> dict[str, float] | None:
    """The counts `encode_live_user` wrote, by name; None when absent."""
    if not raw:
        return None
    return dict(zip(LIVE_USER_FIELDS, msgpack.unpackb(raw), strict=True))
