import io

import numpy as np
import pytest

from app.recsys.models.foldin import FoldInModel, fold_in, gram, pack_factors, unpack_factors
from app.recsys.data.idmap import IdMap

RNG = np.random.default_rng(3)
FACTORS = RNG.normal(size=(6, 3)).astype(np.float32)


def dense_solution(y: np.ndarray, idx: np.ndarray, conf: np.ndarray, reg: float) -> np.ndarray:
    """The textbook form with a full diagonal C (confidence 1 for unseen items) and p."""
    c = np.ones(len(y))
    p = np.zeros(len(y))
    c[idx], p[idx] = conf, 1.0
    y = y.astype(np.float64)
    return np.linalg.solve(y.T @ np.diag(c) @ y + reg * np.eye(y.shape[1]), y.T @ (c * p))


def test_fold_in_matches_dense_closed_form():
    got = fold_in(FACTORS, gram(FACTORS), np.array([1, 4]), np.array([3.0, 5.0]), 0.1)
    np.testing.assert_allclose(got, dense_solution(FACTORS, np.array([1, 4]), np.array([3.0, 5.0]), 0.1), rtol=1e-5)


def test_fold_in_sums_duplicate_items():
    twice = fold_in(FACTORS, gram(FACTORS), np.array([2, 2]), np.array([1.5, 1.5]), 0.1)
    once = fold_in(FACTORS, gram(FACTORS), np.array([2]), np.array([3.0]), 0.1)
    np.testing.assert_allclose(twice, once, rtol=1e-6)


def test_fold_in_rejects_bad_input():
    with pytest.raises(IndexError):
        fold_in(FACTORS, gram(FACTORS), np.array([6]), np.array([1.0]), 0.1)
    with pytest.raises(ValueError, match="> 0"):
        fold_in(FACTORS, gram(FACTORS), np.array([1]), np.array([0.0]), 0.1)


class Published:
    """The attributes pack_factors reads (what a trained ALSRecommender has)."""

    items = IdMap.from_ids([10, 20, 30, 40, 50, 60])
    item_factors = FACTORS
    regularization = 0.1
    alpha = 2.0
    weight_scale = 1.0


def test_pack_unpack_round_trip_without_pickle():
    raw = pack_factors(Published)
    model = unpack_factors(raw)  # loads with allow_pickle=False
    assert isinstance(model, FoldInModel)
    assert model.items == Published.items
    np.testing.assert_array_equal(model.item_factors, FACTORS)
    assert (model.regularization, model.alpha) == (0.1, 2.0)
    np.testing.assert_allclose(model.gram, FACTORS.T.astype(np.float64) @ FACTORS)


def test_recommend_scales_by_alpha_excludes_input_and_drops_unknown_films():
    model = unpack_factors(pack_factors(Published))
    films, scores = model.recommend(np.array([20, 999]), np.array([1.5, 1.0]), n=10)
    # film 20 is index 1; alpha 2 * weight 1.5 = confidence 3; the unknown 999 is ignored
    vector = dense_solution(FACTORS, np.array([1]), np.array([3.0]), 0.1)
    expected = FACTORS.astype(np.float64) @ vector
    expected[1] = -np.inf
    order = np.argsort(-expected)[:5]
    assert films.tolist() == Published.items.external[order].tolist()
    np.testing.assert_allclose(scores, expected[order], rtol=1e-4)


def test_recommend_honours_explicit_exclude_and_n():
    model = unpack_factors(pack_factors(Published))
    films, _ = model.recommend(np.array([20]), np.array([1.0]), n=3, exclude=np.array([20, 30, 40]))
    assert len(films) == 3 and not {20, 30, 40} & set(films.tolist())


def test_packed_alpha_carries_the_training_weight_scale():
    """Training divided the raw weights by their mean (scale 0.25): fold-in of raw weights must too."""

    class Normalised(Published):
        alpha, weight_scale = 8.0, 0.25

    model = unpack_factors(pack_factors(Normalised))
    assert model.alpha == 2.0  # 8 x 0.25: the same confidences as Published's alpha 2 on scale 1
    with np.load(io.BytesIO(pack_factors(Normalised)), allow_pickle=False) as npz:
        assert (float(npz["weight_scale"]), float(npz["model_alpha"])) == (0.25, 8.0)
    np.testing.assert_allclose(model.user_vector(np.array([20]), np.array([1.5])),
                               unpack_factors(pack_factors(Published)).user_vector(np.array([20]), np.array([1.5])))


def test_blobs_packed_before_the_scale_still_unpack():
    buf = io.BytesIO()
    np.savez(buf, item_ids=Published.items.external, item_factors=FACTORS, regularization=np.float64(0.1),
             alpha=np.float64(2.0))
    assert unpack_factors(buf.getvalue()).alpha == 2.0


def test_recommend_for_unknown_films_only_is_empty():
    films, scores = unpack_factors(pack_factors(Published)).recommend(np.array([7]), np.array([1.0]), n=5)
    assert films.size == 0 and scores.size == 0


def test_unpack_rejects_mismatched_arrays():
    import io

    buf = io.BytesIO()
    np.savez(buf, item_ids=np.array([1, 2]), item_factors=FACTORS, regularization=0.1, alpha=1.0)
    with pytest.raises(ValueError, match="does not match"):
        unpack_factors(buf.getvalue())
