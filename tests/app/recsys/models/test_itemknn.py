import numpy as np
import pytest
import scipy.sparse as sp

from app.recsys.data.dataset import Interactions, build_dataset
from app.recsys.models.itemknn import ItemKNNRecommender

# film 1: users 1, 2, 3; film 2: users 1, 2; film 3: user 3; film 4: user 4 alone
PAIRS = [(1, 1), (2, 1), (3, 1), (1, 2), (2, 2), (3, 3), (4, 4)]


@pytest.fixture
def dataset():
    users, films = zip(*PAIRS)
    return build_dataset(Interactions.from_columns(
        {"user_id": users, "film_id": films, "event_type": ["play"] * len(PAIRS), "ts": np.arange(len(PAIRS))}))


def test_similarity_is_the_cosine_of_viewer_sets(dataset):
    model = ItemKNNRecommender(neighbours=10).fit(dataset)
    s = model.similarity.toarray()
    np.testing.assert_allclose(s[0, 1], 2 / np.sqrt(3 * 2), rtol=1e-6)  # |{1,2}| / sqrt(3 * 2)
    np.testing.assert_allclose(s[0, 2], 1 / np.sqrt(3 * 1), rtol=1e-6)
    assert s[1, 2] == 0 and (np.diag(s) == 0).all() and (s[3] == 0).all()


def test_keeps_at_most_neighbours_per_film(dataset):
    model = ItemKNNRecommender(neighbours=1).fit(dataset)
    assert (model.similarity.getnnz(axis=1) <= 1).all()
    assert model.similarity[0].indices.tolist() == [1]  # film 1's nearest is film 2


def test_no_evidence_gives_a_shorter_list(dataset):
    model = ItemKNNRecommender().fit(dataset)
    ids, scores = model.recommend(np.array([3]), 3, seen=dataset.matrix)  # user 4 saw only film 4: no neighbours
    assert (ids == -1).all() and np.isneginf(scores).all()
    ids, _ = model.similar_items(np.array([3]), 3)
    assert (ids == -1).all()


def test_recommend_rows_weighs_the_history(dataset):
    """Similar to recent plays: the score is the weighted sum of similarities to the given films."""
    model = ItemKNNRecommender().fit(dataset)
    s = model.similarity.toarray()
    rows = sp.csr_matrix(([1.0, 0.5], ([0, 0], [1, 2])), shape=(1, 4))  # film 2 now, film 3 half as much
    ids, scores = model.recommend_rows(rows, 4, exclude=rows)
    assert ids[0, 0] == 0 and np.isclose(scores[0, 0], s[1, 0] + 0.5 * s[2, 0], rtol=1e-6)
    assert (ids[0, 1:] == -1).all()
