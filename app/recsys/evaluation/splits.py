"""Holdout splits of interactions into (train, test).

Two protocols: `time_holdout` (everything after a global time T is test: what
the retrain gate uses, it mimics serving the future) and
`per_user_last_fraction` (each user's latest events: every user is evaluated,
the usual MovieLens protocol used by bench/quality.py).
"""
from __future__ import annotations

import numpy as np

from app.recsys.data.dataset import DAY_S, Interactions


def holdout_start(interactions: Interactions, holdout_days: float) -> float:
    """T = latest event - holdout_days: events before T train, the rest test."""
    if holdout_days <= 0:
        raise ValueError(f"holdout_days must be > 0, got {holdout_days}")
    return interactions.max_ts - holdout_days * DAY_S


def time_holdout(interactions: Interactions, holdout_days: float) -> tuple[Interactions, Interactions]:
    """(train, test) split at `holdout_start`."""
    return interactions.split_by_time(holdout_start(interactions, holdout_days))


def per_user_last_fraction(interactions: Interactions, fraction: float = 0.2) -> tuple[Interactions, Interactions]:
    """(train, test): each user's last `fraction` of events by time (at least one) is test.

    Ties in time are broken by film id, so the split is deterministic.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    order = np.lexsort((interactions.film_id, interactions.ts, interactions.user_id))
    users = interactions.user_id[order]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    counts = np.diff(np.r_[starts, len(users)])
    n_test = np.maximum(1, np.floor(counts * fraction)).astype(np.int64)
    rank_from_end = np.repeat(starts + counts, counts) - np.arange(len(users))  # 1 = user's last event
    is_test = np.zeros(len(users), dtype=bool)
    is_test[order] = rank_from_end <= np.repeat(n_test, counts)
    return interactions.select(~is_test), interactions.select(is_test)


def sample_users(interactions: Interactions, limit: int | None, seed: int = 0) -> Interactions:
    """The events of at most `limit` users, a fixed random sample (all events when fewer users)."""
    users = np.unique(interactions.user_id)
    if limit is None or len(users) <= limit:
        return interactions
    chosen = np.random.default_rng(seed).choice(users, size=limit, replace=False)
    return interactions.select(np.isin(interactions.user_id, chosen))
