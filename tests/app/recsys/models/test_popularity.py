import numpy as np
import pytest

from app.recsys.data.dataset import Interactions, build_dataset
from app.recsys.models.popularity import DAY_S, PopularRecommender, TrendingRecommender

NOW = 1.7e9


@pytest.fixture
def dataset():
    # film 10: users 1, 2, 3 (user 1 twice) long ago; film 20: users 1, 2 today; film 30: user 3, 7 days ago
    events = Interactions.from_columns(
        {
            "user_id": [1, 1, 2, 3, 1, 2, 3],
            "film_id": [10, 10, 10, 10, 20, 20, 30],
            "event_type": ["play"] * 7,
            "ts": [NOW - 30 * DAY_S] * 4 + [NOW, NOW, NOW - 7 * DAY_S],
        }
    )
    return build_dataset(events)


def test_popular_counts_distinct_users(dataset):
    model = PopularRecommender().fit(dataset)
    assert model.item_scores.tolist() == [3.0, 2.0, 1.0]  # user 1's repeat counts once


def test_popular_window_counts_only_recent_users(dataset):
    model = PopularRecommender(window_days=10).fit(dataset)
    assert model.item_scores.tolist() == [0.0, 2.0, 1.0]


def test_trending_halves_per_half_life(dataset):
    model = TrendingRecommender(half_life_days=7).fit(dataset)
    # film 10: 3 users * 2^(-30/7); film 20: 2 users * 2^0; film 30: 1 user * 2^(-7/7)
    np.testing.assert_allclose(model.item_scores, [3 * 2 ** (-30 / 7), 2.0, 0.5], rtol=1e-6)


def test_recommend_filters_seen_and_pads(dataset):
    model = PopularRecommender().fit(dataset)
    ids, scores = model.recommend(np.array([0, 1, 2]), 3, seen=dataset.matrix)
    # user 1 saw 10, 20 -> [30]; user 2 saw 10, 20 -> [30]; user 3 saw 10, 30 -> [20]
    assert ids.tolist() == [[2, -1, -1], [2, -1, -1], [1, -1, -1]]
    assert np.isneginf(scores[:, 1:]).all()
    ids, _ = model.recommend(np.array([0]), 2)
    assert ids.tolist() == [[0, 1]]


def test_similar_items_excludes_self(dataset):
    ids, _ = PopularRecommender().fit(dataset).similar_items(np.array([0, 2]), 2)
    assert ids.tolist() == [[1, 2], [0, 1]]


def test_save_load_round_trip(tmp_path, dataset):
    model = TrendingRecommender(half_life_days=3).fit(dataset)
    model.save(tmp_path)
    loaded = TrendingRecommender.load(tmp_path)
    assert loaded.params() == {"half_life_days": 3}
    np.testing.assert_array_equal(loaded.item_scores, model.item_scores)
    assert loaded.items == model.items
    with pytest.raises(ValueError, match="not 'popular'"):
        PopularRecommender.load(tmp_path)


def test_bad_params():
    with pytest.raises(ValueError):
        PopularRecommender(window_days=0)
    with pytest.raises(ValueError):
        TrendingRecommender(half_life_days=-1)


def test_recommend_matches_a_full_sort_with_heavy_users_and_small_blocks(monkeypatch):
    """The windowed ranking must equal the brute-force one, also when blocks are cut short."""
    import app.recsys.models.popularity as popularity

    rng = np.random.default_rng(1)
    n_events = 3000
    events = Interactions.from_columns(
        {
            "user_id": np.r_[rng.integers(1, 60, n_events), np.full(150, 99)],  # user 99 saw 150 films
            "film_id": np.r_[rng.zipf(1.5, n_events) % 200, np.arange(150)] + 1,
            "event_type": ["click"] * (n_events + 150),
            "ts": np.zeros(n_events + 150),
        }
    )
    dataset = build_dataset(events)
    model = PopularRecommender().fit(dataset)
    monkeypatch.setattr(popularity, "_BLOCK_ROWS", 7)
    monkeypatch.setattr(popularity, "_BLOCK_CELLS", 100)
    users = np.arange(len(dataset.users))
    ids, scores = model.recommend(users, 20, seen=dataset.matrix)
    dense = np.tile(model.item_scores, (len(users), 1))
    dense[dataset.matrix.toarray() > 0] = -np.inf
    order = np.argsort(-dense, axis=1, kind="stable")[:, :20]
    expected = np.where(np.isneginf(np.take_along_axis(dense, order, axis=1)), -1, order)
    np.testing.assert_array_equal(ids, expected)
    np.testing.assert_array_equal(scores[ids >= 0], np.take_along_axis(dense, order, axis=1)[ids >= 0])
