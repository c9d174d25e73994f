"""Synthetic data with a planted structure, shared by the model tests."""
from __future__ import annotations

import numpy as np
import pytest

from app.recsys.data.dataset import Dataset, EventWeights, Interactions, build_dataset
from app.recsys.data.load import Films
from app.recsys.models.als import ALSRecommender
from app.recsys.models.base import Recommender
from app.recsys.models.itemknn import ItemKNNRecommender
from app.recsys.ranking import stage
from app.recsys.ranking.twolevel import TwoLevelConfig, TwoLevelRecommender


def planted_interactions(
    n_groups: int = 4,
    users_per_group: int = 40,
    items_per_group: int = 25,
    events_per_user: int = 12,
    noise: float = 0.1,
    seed: int = 0,
) -> Interactions:
    """Users of group g mostly watch films of group g (Zipf-like within the group).

    Global popularity mixes all groups, so a personalised model that finds the
    groups must beat Popular; the seed makes the data (and the results) fixed.
    """
    rng = np.random.default_rng(seed)
    n_items = n_groups * items_per_group
    within = 1.0 / np.arange(1, items_per_group + 1)
    within /= within.sum()
    users, films, ts = [], [], []
    for user in range(n_groups * users_per_group):
        group = user % n_groups
        in_group = rng.choice(items_per_group, size=events_per_user, replace=False, p=within) + group * items_per_group
        stray = rng.random(events_per_user) < noise
        chosen = np.where(stray, rng.integers(0, n_items, size=events_per_user), in_group)
        chosen = np.unique(chosen)
        users += [user + 1] * len(chosen)
        films += (chosen + 1000).tolist()
        ts += sorted(rng.uniform(1.6e9, 1.6e9 + 30 * 86400, size=len(chosen)).tolist())
    return Interactions.from_columns(
        {"user_id": users, "film_id": films, "event_type": ["play"] * len(users), "ts": ts}
    )


@pytest.fixture(scope="session")
def planted() -> Interactions:
    return planted_interactions()


def small_two_level(events: Interactions) -> TwoLevelRecommender:
    """A two-level model over 8-factor ALS and item-kNN (an item-item source) fitted on planted `events`
    (genre "g<group>" per film), its ranker taught on each user's last 20%: seconds to fit, real trees."""
    weights = EventWeights()
    train = build_dataset(events, weights)
    als = ALSRecommender(factors=8, iterations=10).fit(train)
    ids = np.unique(events.film_id)
    films = Films(ids, [""] * len(ids), [[f"g{(f - 1000) // 25}"] for f in ids.tolist()])
    config = TwoLevelConfig(n_candidates=20, label_rule="per_user")

    def fit_all(dataset: Dataset) -> dict[str, Recommender]:
        return {"als": ALSRecommender(factors=8, iterations=10).fit(dataset),
                "item_knn": ItemKNNRecommender(neighbours=20).fit(dataset)}

    cut = stage.fit_stage(events, weights, fit_all, min_users=50, max_share=0.3, config=config)
    return stage.build(cut, events, train, events.max_ts + 1,
                       {"als": als, "item_knn": ItemKNNRecommender(neighbours=20).fit(train)}, films, config).model
