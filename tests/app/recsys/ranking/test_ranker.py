"""The LambdaRank ranker: learns a planted order, deterministic, saved as text (never pickle)."""
from __future__ import annotations

import numpy as np
import pytest

from app.recsys.ranking.ranker import Ranker, RankerParams

NAMES = ["signal", "noise"]


def planted(users: int = 300, per_user: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per user 20 candidates; the 2 positives have a higher `signal` (plus noise)."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((users, per_user), dtype=np.int32)
    labels[:, :2] = 1
    signal = labels + rng.normal(0, 0.6, labels.shape)
    features = np.column_stack([signal.ravel(), rng.normal(size=labels.size)]).astype(np.float32)
    return features, labels.ravel(), np.full(users, per_user)


def test_the_ranker_learns_the_planted_order_and_ranks_positives_first() -> None:
    features, labels, groups = planted()
    ranker = Ranker.train(features, labels, groups, NAMES)
    test_x, test_y, _ = planted(seed=1)

    def precision_at_2(scores: np.ndarray) -> float:
        top2 = np.argsort(-scores.reshape(-1, 20), axis=1)[:, :2]
        return float(np.take_along_axis(test_y.reshape(-1, 20), top2, 1).mean())

    best = precision_at_2(test_x[:, 0])  # ranking by the planted signal itself: the best possible
    assert precision_at_2(ranker.predict(test_x)) >= 0.95 * best and best > 0.4  # chance: 0.1
    assert list(ranker.importance())[0] == "signal"
    assert ranker.stats.users == 300 and ranker.stats.es_users == 60 and ranker.stats.trees >= 1


def test_training_is_deterministic_and_the_text_model_round_trips(tmp_path) -> None:
    features, labels, groups = planted()
    first = Ranker.train(features, labels, groups, NAMES, RankerParams(seed=3))
    again = Ranker.train(features, labels, groups, NAMES, RankerParams(seed=3))
    assert first.to_strings() == again.to_strings()
    first.save(tmp_path)
    assert (tmp_path / "ranker.txt").read_text().startswith("tree")  # LightGBM's own text format
    loaded = Ranker.load(tmp_path)
    np.testing.assert_array_equal(loaded.predict(features), first.predict(features))
    assert loaded.features == NAMES and loaded.stats == first.stats


def test_contributions_add_up_to_the_score() -> None:
    features, labels, groups = planted()
    ranker = Ranker.train(features, labels, groups, NAMES)
    full = ranker.booster.predict(features[:50], num_iteration=ranker.stats.trees, pred_contrib=True)
    np.testing.assert_allclose(ranker.contributions(features[:50]).sum(axis=1) + full[:, -1],
                               ranker.predict(features[:50]), rtol=1e-4, atol=1e-5)


def test_users_without_a_positive_are_left_out_and_bad_shapes_refused() -> None:
    features, labels, groups = planted()
    labels[:20 * 100] = 0  # the first 100 users have no positive candidate
    assert Ranker.train(features, labels, groups, NAMES).stats.users == 200
    with pytest.raises(ValueError, match="do not agree"):
        Ranker.train(features[:-1], labels, groups, NAMES)
    with pytest.raises(ValueError, match="nothing to learn"):
        Ranker.train(features, np.zeros_like(labels), groups, NAMES)
    ranker = Ranker.train(*planted(), NAMES)
    with pytest.raises(ValueError, match="expects 2 features"):
        ranker.predict(np.zeros((3, 3), dtype=np.float32))
