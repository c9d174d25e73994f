import json

import numpy as np
import pytest

from app.recsys.data.dataset import Dataset, build_dataset
from app.recsys.evaluation.evaluate import evaluate
from app.recsys.evaluation.splits import per_user_last_fraction, time_holdout
from app.recsys.models.als import ALSRecommender
from app.recsys.models.popularity import PopularRecommender


SMALL = {"factors": 8, "regularization": 0.1, "alpha": 2.0, "iterations": 10}


@pytest.fixture(scope="module")
def split(planted):
    train, test = per_user_last_fraction(planted, 0.25)
    return build_dataset(train), test


@pytest.fixture(scope="module")
def als(split):
    return ALSRecommender(**SMALL).fit(split[0])


@pytest.mark.parametrize("params", [SMALL, {}])
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
        assert set(npz.files) == {"user_factors", "item_factors", "user_ids", "item_ids", "weight_scale"}
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


@pytest.fixture(scope="module")
def warm_split(planted):
    """(full training set, test, holdout model): the holdout model saw only events before the last 7 days,
    as in the retrain, so the full set has users/items it never saw (random start)."""
    train, test = per_user_last_fraction(planted, 0.25)
    full, early = build_dataset(train), build_dataset(time_holdout(train, 7)[0])
    assert len(early.items) < len(full.items)
    return full, test, ALSRecommender(**SMALL).fit(early)


def test_warm_start_recommends_as_well_as_a_full_cold_fit(warm_split):
    full, test, holdout_model = warm_split
    cold = evaluate(ALSRecommender(**SMALL).fit(full), full, test, k=10)["ndcg@10"]
    warm = evaluate(ALSRecommender(**SMALL).fit(full, warm_start=holdout_model, iterations=3), full, test, k=10)
    assert warm["ndcg@10"] >= 0.95 * cold
    # ... and it is the preset factors doing it: one iteration from them beats one from random
    one_warm = ALSRecommender(**SMALL).fit(full, warm_start=holdout_model, iterations=1)
    one_cold = ALSRecommender(**SMALL).fit(full, iterations=1)
    assert evaluate(one_warm, full, test, k=10)["ndcg@10"] > 2 * evaluate(one_cold, full, test, k=10)["ndcg@10"]


def test_warm_start_runs_the_requested_iterations(warm_split):
    """Two iterations from the holdout factors == one, then one more from that result (ALS keeps no other state)."""
    full, _, holdout_model = warm_split
    two = ALSRecommender(**SMALL).fit(full, warm_start=holdout_model, iterations=2)
    one = ALSRecommender(**SMALL).fit(full, warm_start=holdout_model, iterations=1)
    one_more = ALSRecommender(**SMALL).fit(full, warm_start=one, iterations=1)
    np.testing.assert_allclose(one_more.item_factors, two.item_factors, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(one_more.user_factors, two.user_factors, rtol=1e-5, atol=1e-6)
    assert not np.allclose(one.item_factors, two.item_factors, atol=1e-3)
    assert two.iterations == SMALL["iterations"]  # the model's own setting is unchanged


def test_warm_start_refuses_mismatched_factors_and_bad_iterations(warm_split):
    full, _, holdout_model = warm_split
    with pytest.raises(ValueError, match="warm-start"):
        ALSRecommender(factors=4).fit(full, warm_start=holdout_model)
    with pytest.raises(ValueError, match="iterations"):
        ALSRecommender(**SMALL).fit(full, warm_start=holdout_model, iterations=0)


def test_normalised_weights_make_the_fit_independent_of_their_scale(split):
    """Confidence = alpha x weight / mean weight: multiplying every weight by 10 changes nothing."""
    train, _ = split
    tenfold = Dataset(train.users, train.items, train.matrix * 10, train.first_ts, train.last_ts, train.now)
    a, b = ALSRecommender(**SMALL).fit(train), ALSRecommender(**SMALL).fit(tenfold)
    np.testing.assert_allclose(a.item_factors, b.item_factors, rtol=1e-4, atol=1e-5)
    assert a.weight_scale == pytest.approx(1 / train.matrix.data.mean()) and b.weight_scale == pytest.approx(
        a.weight_scale / 10)
    assert a.confidence_scale == pytest.approx(SMALL["alpha"] * a.weight_scale)
    raw = ALSRecommender(**SMALL, normalise=False).fit(tenfold)
    assert raw.weight_scale == 1.0 and not np.allclose(raw.item_factors, b.item_factors, atol=1e-3)


def test_fold_in_applies_the_training_weight_scale(split):
    """A training user's raw row folded in reproduces their trained vector only when scaled like the fit."""
    train, _ = split
    model = ALSRecommender(**SMALL).fit(Dataset(train.users, train.items, train.matrix * 7, train.first_ts,
                                                train.last_ts, train.now))
    row = train.matrix[3] * 7
    folded = model.fold_in(row.indices, row.data)
    cosine = folded @ model.user_factors[3] / np.linalg.norm(folded) / np.linalg.norm(model.user_factors[3])
    assert cosine > 0.95


def test_artifacts_from_before_the_weight_scale_load_as_raw_weight_models(tmp_path, als):
    als.save(tmp_path)
    with np.load(tmp_path / "model.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files if k != "weight_scale"}
    np.savez(tmp_path / "model.npz", **arrays)
    meta = json.loads((tmp_path / "meta.json").read_text())
    del meta["params"]["normalise"]
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    old = ALSRecommender.load(tmp_path)
    assert old.weight_scale == 1.0 and old.normalise is False
    als.save(tmp_path / "new")
    assert ALSRecommender.load(tmp_path / "new").weight_scale == als.weight_scale
