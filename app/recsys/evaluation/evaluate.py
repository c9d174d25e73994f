"""Offline evaluation: holdout splits and top-K metrics of a fitted model.

Two protocols: `time_holdout` (everything after a global time T is test: what
the retrain gate uses, it mimics serving the future) and
`per_user_last_fraction` (each user's latest events: every user is evaluated,
the usual MovieLens protocol used by bench/quality.py).
"""
from __future__ import annotations

import numpy as np

from app.recsys.models.base import Recommender
from app.recsys.data.dataset import DAY_S, Dataset, EventWeights, Interactions, build_dataset
from app.recsys.evaluation.metrics import compute_metrics, standard_metrics


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


def relevant_items(train: Dataset, test: Interactions, weights: EventWeights | None = None) -> list[np.ndarray]:
    """Per training user, the item indices of positive-weight test events, minus the user's training items.

    Items or users unknown to training are dropped (no model can rank them),
    and so are items already in the user's training row (they are filtered
    from recommendations, so they could never count as hits).
    """
    test_matrix = build_dataset(test, weights, users=train.users, items=train.items).matrix
    new = (test_matrix - test_matrix.multiply(train.matrix > 0)).tocsr()
    new.eliminate_zeros()
    return np.split(new.indices.astype(np.int64), new.indptr[1:-1])


def evaluate(
    model: Recommender,
    train_dataset: Dataset,
    test_interactions: Interactions,
    k: int = 10,
    weights: EventWeights | None = None,
) -> dict[str, float]:
    """Metrics@k of `model` (fitted on `train_dataset`) against the test events; also counts users."""
    relevant = relevant_items(train_dataset, test_interactions, weights)
    users = np.flatnonzero([len(r) > 0 for r in relevant])
    recommended, _ = model.recommend(users, k, seen=train_dataset.matrix)
    n_users = max(len(train_dataset.users), 1)
    popularity_share = np.bincount(train_dataset.matrix.indices, minlength=train_dataset.shape[1]) / n_users
    metrics = standard_metrics(k, train_dataset.shape[1], popularity_share)
    return compute_metrics(recommended, [relevant[u] for u in users], metrics)
