import numpy as np
import pytest
import scipy.sparse as sp

from app.recsys.data.dataset import Interactions, build_dataset
from app.recsys.models.ease import EASERecommender


def _dataset(pairs: list[tuple[int, int]]):
    users, films = zip(*pairs)
    return build_dataset(Interactions.from_columns(
        {"user_id": users, "film_id": films, "event_type": ["play"] * len(pairs), "ts": np.arange(len(pairs))}))


# film 1: users 1-4; film 2: users 1-3; film 3: users 3, 4; film 4: user 5 only
PAIRS = [(1, 1), (2, 1), (3, 1), (4, 1), (1, 2), (2, 2), (3, 2), (3, 3), (4, 3), (5, 4), (5, 1)]


def test_weights_are_the_closed_form():
    dataset = _dataset(PAIRS)
    model = EASERecommender(regularization=2.0).fit(dataset)
    x = (dataset.matrix > 0).toarray().astype(np.float64)
    p = np.linalg.inv(x.T @ x + 2.0 * np.eye(4))
    expected = np.eye(4) - p / np.diag(p)[None, :]
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(model.weights, expected, rtol=1e-4, atol=1e-6)
    # user 4 (films 1, 3): score of film 2 = B[1, 2] + B[3, 2]
    ids, scores = model.recommend(np.array([3]), 4, seen=dataset.matrix)
    want = expected[0, 1] + expected[2, 1]
    assert ids[0, 0] in (1, 3) and np.isclose(scores[0][ids[0] == 1][0], want, atol=1e-5)


def test_pruned_to_the_most_viewed_films():
    dataset = _dataset(PAIRS)
    model = EASERecommender(regularization=2.0, max_items=2).fit(dataset)
    assert model.columns.tolist() == [0, 1]  # films 1 (5 viewers) and 2 (3), not 3 (2) or 4 (1)
    ids, _ = model.recommend(np.arange(5), 4, seen=dataset.matrix)
    assert set(ids[ids >= 0].tolist()) <= {0, 1}  # films outside get no item-item scores
    similar, _ = model.similar_items(np.array([2, 3]), 3)
    assert (similar == -1).all()
    # a history holding only pruned films scores nothing
    only_pruned = sp.csr_matrix(([1.0], ([0], [3])), shape=(1, 4))
    _, scores = model.recommend_rows(only_pruned, 2)
    assert np.all(scores[np.isfinite(scores)] == 0)


def test_recommend_rows_matches_recommend_for_the_same_history():
    dataset = _dataset(PAIRS)
    model = EASERecommender(regularization=2.0).fit(dataset)
    users = np.arange(5)
    direct = model.recommend(users, 3, seen=dataset.matrix)
    rows = model.recommend_rows(model.history[users], 3, exclude=dataset.matrix[users])
    for got, want in zip(rows, direct):
        np.testing.assert_array_equal(got, want)


def test_bad_params():
    with pytest.raises(ValueError):
        EASERecommender(regularization=0)
    with pytest.raises(ValueError):
        EASERecommender(max_items=0)
