"""Top-K metrics of a fitted model on held-out events (splits: `splits`)."""
from __future__ import annotations

import numpy as np

from app.recsys.data.dataset import Dataset, EventWeights, Interactions, build_dataset
from app.recsys.evaluation.metrics import compute_metrics, standard_metrics
from app.recsys.models.base import Recommender


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
