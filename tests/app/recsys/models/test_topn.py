import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from app.recsys.models.topn import pad_ranked, top_n


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


@given(
    scores=st.lists(st.lists(st.sampled_from([-np.inf, 0.0, 0.5, 1.0, 2.0, 3.5]), min_size=1, max_size=12), min_size=1,
                    max_size=5).filter(lambda rows: len({len(r) for r in rows}) == 1),
    n=st.integers(0, 15),
)
def test_top_n_agrees_with_a_full_sort(scores, n):
    matrix = np.array(scores, dtype=np.float32)
    ids, top = top_n(matrix, n)
    assert ids.shape == top.shape == (len(matrix), n)
    for row, row_ids, row_top in zip(matrix, ids, top):
        expected = np.sort(row[np.isfinite(row)])[::-1][:n]
        valid = row_ids >= 0
        assert row_top[valid].tolist() == expected.tolist()  # same scores in the same order (ties may swap ids)
        assert (row[row_ids[valid]] == row_top[valid]).all() and len(set(row_ids[valid])) == valid.sum()
        assert np.isneginf(row_top[~valid]).all()
