import numpy as np
import pytest
import scipy.sparse as sp

from app.recsys.data.dataset import build_dataset
from app.recsys.evaluation.evaluate import Holdout, evaluate_on
from app.recsys.evaluation.splits import per_user_last_fraction
from app.recsys.models.fm import FMRecommender, _Sample, _training_rows
from app.recsys.models.popularity import PopularRecommender


@pytest.fixture(scope="module")
def split(planted):
    train, test = per_user_last_fraction(planted, 0.25)
    return build_dataset(train), test


def _group_genres(dataset):
    """Planted films are 1000 + group * 25 + rank: genre = the group, plus a genre every film shares."""
    groups = (dataset.items.external - 1000) // 25
    rows = np.r_[np.arange(len(groups)), np.arange(len(groups))]
    cols = np.r_[groups, np.full(len(groups), 4)]
    return sp.csr_matrix((np.full(len(rows), 0.5), (rows, cols)), shape=(len(groups), 5))


def test_closed_form_equals_myfm_predictions():
    """b_i and q_i fold the genre block into per-film terms: w0 + w_u + b_i + v_u.q_i is myfm's own score."""
    import myfm

    rng = np.random.default_rng(0)
    history = sp.csr_matrix((rng.random((30, 12)) < 0.3).astype(np.float32))
    genres = sp.csr_matrix(rng.random((12, 3)) * (rng.random((12, 3)) < 0.5))
    users, items, labels = _training_rows(history, 2, rng)
    film_block = sp.hstack([sp.identity(12, format="csr"), genres], format="csr")
    blocks = [myfm.RelationBlock(users, sp.identity(30, format="csr")), myfm.RelationBlock(items, film_block)]
    fm = myfm.MyFMClassifier(rank=4, random_seed=0).fit(sp.csr_matrix((len(labels), 0)), labels, X_rel=blocks,
                                                        n_iter=10, n_kept_samples=3)
    for raw in fm.predictor_.samples:
        s = _Sample.of(raw, 30, 12, genres)
        closed = s.w0 + s.user_bias[users] + s.bias[items] + np.einsum("ij,ij->i", s.user[users], s.item[items])
        np.testing.assert_allclose(closed, raw.predict_score(sp.csr_matrix((len(labels), 0)), blocks), atol=1e-4)


def test_negatives_are_uniform_and_never_positives():
    rng = np.random.default_rng(1)
    dense = rng.random((50, 40)) < 0.2
    dense[:, 7] = rng.random(50) < 0.8  # one much more popular film
    history = sp.csr_matrix(dense.astype(np.float32))
    users, items, labels = _training_rows(history, 4, rng)
    assert labels.sum() == history.nnz
    negative = labels == 0
    assert history[users[negative], items[negative]].sum() == 0
    # a draw that hits one of the user's positives is dropped: expected 4 x nnz x (1 - density)
    expected = 4 * np.sum(history.getnnz(axis=1) * (1 - history.getnnz(axis=1) / 40))
    assert abs(negative.sum() - expected) < 0.1 * expected
    # uniform, not by popularity: the most-watched film is drawn as often as any, then mostly dropped
    popular = int(np.argmax(history.getnnz(axis=0)))
    assert np.bincount(items[negative], minlength=40)[popular] < np.mean(np.bincount(items[negative], minlength=40))


def test_user_subsample_folds_in_the_others_and_they_beat_popular(split):
    train, test = split
    model = FMRecommender(rank=8, sweeps=20, max_users=80).fit(train, _group_genres(train))
    assert model.trained.sum() == 80 and len(model.trained) == len(train.users)
    holdout = Holdout.from_split(train, test)
    fm = evaluate_on(model, train, holdout).ndcg
    popular = evaluate_on(PopularRecommender().fit(train), train, holdout).ndcg
    folded = ~model.trained[train.users.to_index(holdout.users)]
    assert folded.sum() > 30
    assert fm[folded].mean() > 1.3 * popular[folded].mean()


def test_users_not_trained_are_folded_in_when_asked_and_saved_whole(split, tmp_path):
    """Folding in on demand (any order, any subset, repeated) gives what the whole fold gives; save
    writes every user's vector."""
    train, _ = split
    model = FMRecommender(rank=8, sweeps=20, max_users=80).fit(train, _group_genres(train))
    everyone = np.arange(len(train.users))
    whole = model._fold.user_vectors(sp.csr_matrix(train.matrix > 0, dtype=np.float32)[~model.trained])
    some = everyone[::7][::-1]
    first, _ = model.recommend(some, 10, seen=train.matrix)
    ids, scores = model.recommend(everyone, 10, seen=train.matrix)
    np.testing.assert_array_equal(first, ids[some])
    np.testing.assert_allclose(model.user_vectors[~model.trained], whole, rtol=1e-5, atol=1e-6)
    model.save(tmp_path / "fm")
    loaded = FMRecommender.load(tmp_path / "fm")
    np.testing.assert_array_equal(loaded.recommend(everyone, 10, seen=train.matrix)[0], ids)


def test_recommend_rows_folds_in_a_trained_users_history(split):
    """A trained user's own history, folded in, gives mostly the same top-10 as their trained vector."""
    train, _ = split
    model = FMRecommender(rank=8, sweeps=20).fit(train, _group_genres(train))
    users = np.arange(0, len(train.users), 8)
    trained, _ = model.recommend(users, 10, seen=train.matrix)
    folded, _ = model.recommend_rows(train.matrix[users], 10, exclude=train.matrix[users])
    overlap = [len(set(a) & set(b)) / 10 for a, b in zip(trained.tolist(), folded.tolist())]
    assert np.mean(overlap) > 0.6


def test_genres_must_align_with_the_items(split):
    with pytest.raises(ValueError, match="one row per item"):
        FMRecommender().fit(split[0], sp.csr_matrix((3, 2)))
