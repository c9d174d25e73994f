"""Top-K metrics of a fitted model on held-out events (splits: `splits`).

`Holdout` fixes what models are judged on, in external ids: the users to
evaluate and the films each came to. Any model that recommends external
films to external users can be scored against it, so models trained on
different matrices (another weighting, a later two-level model) are scored
per user on the same ground truth, which the gate's paired comparison needs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.recsys.data.dataset import Dataset, EventWeights, Interactions, build_dataset
from app.recsys.data.idmap import IdMap
from app.recsys.evaluation.metrics import NDCG, ranking_values, standard_metrics, summarise
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


@dataclass(frozen=True)
class Holdout:
    """The evaluable users (external ids, ascending) and, per user, the films they came to (external ids)."""

    users: np.ndarray
    relevant: list[np.ndarray]

    @classmethod
    def from_split(cls, train: Dataset, test: Interactions, weights: EventWeights | None = None) -> Holdout:
        """Users of `train` with at least one new film in `test` (see `relevant_items`)."""
        relevant = relevant_items(train, test, weights)
        users = np.flatnonzero([len(r) > 0 for r in relevant])
        return cls(train.users.to_external(users), [train.items.to_external(relevant[u]) for u in users])

    def __len__(self) -> int:
        return len(self.users)


@dataclass(frozen=True)
class Evaluation:
    """Averaged metrics (`metrics`, as `evaluate` returns them) and per-user NDCG@k aligned with `Holdout.users`."""

    metrics: dict[str, float]
    ndcg: np.ndarray


def evaluate_on(model: Recommender, train_dataset: Dataset, holdout: Holdout, k: int = 10) -> Evaluation:
    """Score `model` (fitted on `train_dataset`; seen items filtered) on `holdout`.

    A holdout user the model's matrix does not have gets no recommendations
    (every ranking metric 0 for that user).
    """
    index = train_dataset.users.to_index(holdout.users)
    known = index >= 0
    recommended = np.full((len(holdout), k), -1, dtype=np.int64)
    if known.any():
        recommended[known], _ = model.recommend(index[known], k, seen=train_dataset.matrix)
    n_users = max(len(train_dataset.users), 1)
    popularity_share = np.bincount(train_dataset.matrix.indices, minlength=train_dataset.shape[1]) / n_users
    metrics = standard_metrics(k, train_dataset.shape[1], popularity_share)
    _, per_user = ranking_values(*_dense(train_dataset.items.to_external(recommended), holdout.relevant), metrics)
    return Evaluation(summarise(per_user, recommended, metrics, len(holdout)), per_user[NDCG(k).key])


def _dense(recommended: np.ndarray, relevant: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Both sides' external film ids as dense codes (-1 padding kept): the hit test packs
    (user, film) pairs into one int64, which ids up to 2^64 would overflow."""
    flat = np.concatenate(relevant) if relevant else np.zeros(0, dtype=np.int64)
    codes = IdMap.from_ids(np.concatenate([flat, recommended[recommended >= 0]]))
    dense = np.where(recommended >= 0, codes.to_index(recommended), -1)
    return dense, np.split(codes.to_index(flat), np.cumsum([len(r) for r in relevant])[:-1])


def evaluate(
    model: Recommender,
    train_dataset: Dataset,
    test_interactions: Interactions,
    k: int = 10,
    weights: EventWeights | None = None,
) -> dict[str, float]:
    """Metrics@k of `model` (fitted on `train_dataset`) against the test events; also counts users."""
    return evaluate_on(model, train_dataset, Holdout.from_split(train_dataset, test_interactions, weights), k).metrics
