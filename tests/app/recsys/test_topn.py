import numpy as np

from app.recsys.topn import pad_ranked, top_n


def test_top_n_orders_best_first():
    ids, scores = top_n(np.array([[0.1, 0.9, 0.5], [3.0, 1.0, 2.0]]), 2)
    assert ids.tolist() == [[1, 2], [0, 2]]
    assert scores.tolist() == [[np.float32(0.9), np.float32(0.5)], [3.0, 2.0]]


def test_top_n_pads_when_too_few_candidates():
    ids, scores = top_n(np.array([[1.0, -np.inf, 2.0]]), 4)
    assert ids.tolist() == [[2, 0, -1, -1]]
    assert scores[0, :2].tolist() == [2.0, 1.0]
    assert np.all(np.isneginf(scores[0, 2:]))


def test_pad_ranked_treats_float_min_as_filtered():
    ids, scores = pad_ranked(np.array([[4, 5]]), np.array([[1.0, np.finfo(np.float32).min]]), 3)
    assert ids.tolist() == [[4, -1, -1]]
    assert scores.dtype == np.float32 and ids.dtype == np.int64
