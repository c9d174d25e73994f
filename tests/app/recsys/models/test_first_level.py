"""The contract every first-level model keeps (the two-level model's candidate generators):
beats Popular on planted groups, filters seen films, pads, finds similar films in the
planted group, and reloads from .npz + meta.json without pickle to identical answers."""
import numpy as np
import pytest
import scipy.sparse as sp

from app.recsys.data.dataset import build_dataset
from app.recsys.evaluation.evaluate import evaluate
from app.recsys.evaluation.splits import per_user_last_fraction
from app.recsys.models.registry import (EASERecommender, FMRecommender, ItemKNNRecommender, PopularRecommender,
                                        Recommender, load_model)

MODELS = {
    "ease": lambda: EASERecommender(regularization=10.0),
    "item_knn": lambda: ItemKNNRecommender(neighbours=30),
    "fm": lambda: FMRecommender(rank=8, sweeps=20),
}


@pytest.fixture(scope="module")
def split(planted):
    train, test = per_user_last_fraction(planted, 0.25)
    return build_dataset(train), test


@pytest.fixture(scope="module", params=sorted(MODELS))
def fitted(request, split):
    return MODELS[request.param]().fit(split[0])


def test_beats_popular_on_planted_groups(split, fitted):
    train, test = split
    model_metrics = evaluate(fitted, train, test, k=10)
    popular_metrics = evaluate(PopularRecommender().fit(train), train, test, k=10)
    assert model_metrics["users"] == popular_metrics["users"] > 0
    assert model_metrics["ndcg@10"] > 1.3 * popular_metrics["ndcg@10"]
    assert model_metrics["recall@10"] > popular_metrics["recall@10"]


def test_recommend_filters_seen_and_pads(split, fitted):
    train, _ = split
    assert isinstance(fitted, Recommender)
    users = np.arange(len(train.users))
    ids, scores = fitted.recommend(users, 10, seen=train.matrix)
    assert ids.shape == scores.shape == (len(users), 10)
    for u in users:
        assert not set(ids[u].tolist()) & set(train.matrix[u].indices.tolist())
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first
    ids, scores = fitted.recommend(np.array([0]), len(train.items) + 5, seen=train.matrix)
    real = ids[0] >= 0
    assert not real[len(train.items) - train.matrix[0].nnz:].any()  # never more than the unseen films
    assert (ids[0][~real] == -1).all() and np.isneginf(scores[0][~real]).all()
    assert real[:5].all() and (np.diff(real.astype(int)) <= 0).all()  # padding only at the end


def test_similar_items_exclude_self_and_stay_in_the_planted_group(fitted):
    items = np.arange(len(fitted.items))
    ids, scores = fitted.similar_items(items, 5)
    assert ids.shape == (len(items), 5)
    assert not (ids == items[:, None]).any()
    head = fitted.items.to_index([1000, 1025, 1050, 1075])  # the head film of each group
    ids, _ = fitted.similar_items(head, 3)
    groups = (fitted.items.to_external(ids) - 1000) // 25
    assert (groups == np.arange(4)[:, None]).mean() > 0.8


def test_save_load_round_trip_identical_without_pickle(tmp_path, split, fitted):
    train, _ = split
    fitted.save(tmp_path)
    with np.load(tmp_path / "model.npz", allow_pickle=False) as npz:
        assert all(npz[key].dtype != object for key in npz.files)
    loaded = load_model(tmp_path)
    assert type(loaded) is type(fitted) and loaded.params() == fitted.params()
    users = np.arange(len(train.users))
    for got, want in zip(loaded.recommend(users, 10, train.matrix), fitted.recommend(users, 10, train.matrix)):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(loaded.similar_items(np.arange(5), 4), fitted.similar_items(np.arange(5), 4)):
        np.testing.assert_array_equal(got, want)


def test_bad_input_raises(split, fitted):
    train, _ = split
    with pytest.raises(IndexError, match="user index"):
        fitted.recommend(np.array([len(train.users)]), 5)
    with pytest.raises(IndexError, match="item index"):
        fitted.similar_items(np.array([-1]), 5)
    with pytest.raises(ValueError, match="columns"):
        fitted.recommend_rows(sp.csr_matrix((1, len(train.items) + 1)), 5)
    with pytest.raises(RuntimeError, match="not fitted"):
        type(fitted)().recommend(np.array([0]), 5)
    with pytest.raises(ValueError, match="empty"):
        type(fitted)().fit(build_dataset(per_user_last_fraction(split[1], 0.5)[0].select(np.zeros(0, dtype=int))))
