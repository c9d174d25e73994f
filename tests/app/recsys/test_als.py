import numpy as np
import pytest

from app.recsys.als import ALSRecommender
from app.recsys.dataset import build_dataset
from app.recsys.evaluate import evaluate, per_user_last_fraction
from app.recsys.popularity import PopularRecommender


@pytest.fixture(scope="module")
def split(planted):
    train, test = per_user_last_fraction(planted, 0.25)
    return build_dataset(train), test


@pytest.fixture(scope="module")
def als(split):
    return ALSRecommender(factors=8, regularization=0.1, alpha=2.0, iterations=10).fit(split[0])


@pytest.mark.parametrize("params", [{"factors": 8, "regularization": 0.1, "alpha": 2.0, "iterations": 10}, {}])
def test_als_beats_popular_on_planted_groups(split, params):
    """Small explicit params and the shipped (MovieLens-tuned) defaults both find the groups."""
    train, test = split
    als_metrics = evaluate(ALSRecommender(**params).fit(train), train, test, k=10)
    popular_metrics = evaluate(PopularRecommender().fit(train), train, test, k=10)
    assert als_metrics["users"] == popular_metrics["users"] > 0
    assert als_metrics["ndcg@10"] > 1.3 * popular_metrics["ndcg@10"]
    assert als_metrics["recall@10"] > popular_metrics["recall@10"]


def test_recommend_filters_seen_items_and_pads(split, als):
    train, _ = split
    users = np.arange(len(train.users))
    ids, scores = als.recommend(users, 10, seen=train.matrix)
    assert ids.shape == scores.shape == (len(users), 10)
    for u in users:
        assert not set(ids[u].tolist()) & set(train.matrix[u].indices.tolist())
    # asking for more than the catalog pads with -1 / -inf after the unseen items
    ids, scores = als.recommend(np.array([0]), len(train.items) + 5, seen=train.matrix)
    n_unseen = len(train.items) - train.matrix[0].nnz
    assert (ids[0, :n_unseen] >= 0).all() and (ids[0, n_unseen:] == -1).all()
    assert np.isneginf(scores[0, n_unseen:]).all()


def test_similar_items_excludes_self(als):
    items = np.arange(len(als.items))
    ids, scores = als.similar_items(items, 5)
    assert ids.shape == (len(items), 5)
    assert not (ids == items[:, None]).any()
    assert (np.diff(scores, axis=1) <= 1e-6).all()


def test_similar_items_stay_in_planted_group(als):
    # items are 1000 + group * 25 + rank; a head item's neighbours should share its group
    ids, _ = als.similar_items(als.items.to_index([1000, 1025, 1050, 1075]), 3)
    groups = (als.items.to_external(ids) - 1000) // 25
    assert (groups == np.arange(4)[:, None]).mean() > 0.8


def test_save_load_round_trip_identical(tmp_path, split, als):
    train, _ = split
    als.save(tmp_path)
    with np.load(tmp_path / "model.npz", allow_pickle=False) as npz:
        assert set(npz.files) == {"user_factors", "item_factors", "user_ids", "item_ids"}
    loaded = ALSRecommender.load(tmp_path)
    assert loaded.params() == als.params()
    users = np.arange(len(train.users))
    for got, want in zip(loaded.recommend(users, 10, train.matrix), als.recommend(users, 10, train.matrix)):
        np.testing.assert_array_equal(got, want)


def test_fold_in_of_training_row_approximates_user_recommendations(split, als):
    train, _ = split
    overlaps = []
    for u in range(0, len(train.users), 16):
        row = train.matrix[u]
        vector = als.fold_in(row.indices, row.data)
        folded, _ = als.recommend_vectors(vector, 10, seen=row)
        trained, _ = als.recommend(np.array([u]), 10, seen=train.matrix)
        overlaps.append(len(set(folded[0]) & set(trained[0])) / 10)
    assert np.mean(overlaps) > 0.8


def test_bad_input_raises(split, als):
    with pytest.raises(IndexError, match="user index"):
        als.recommend(np.array([len(split[0].users)]), 5)
    with pytest.raises(RuntimeError, match="not fitted"):
        ALSRecommender().recommend(np.array([0]), 5)
    with pytest.raises(ValueError, match="seen must be"):
        als.recommend_vectors(np.zeros((2, 8)), 5, seen=split[0].matrix)
    with pytest.raises(ValueError):
        ALSRecommender(factors=0)


def test_with_factors_builds_a_fitted_copy_and_checks_shapes(als):
    copy = als.with_factors(als.users, als.items, als.user_factors, als.item_factors)
    assert copy is not als and copy.params() == als.params()
    np.testing.assert_array_equal(copy.similar_items(np.arange(3), 4)[0], als.similar_items(np.arange(3), 4)[0])
    with pytest.raises(ValueError, match="do not match"):
        als.with_factors(als.users, als.items, als.user_factors[:, :2], als.item_factors)
