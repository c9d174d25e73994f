import numpy as np
import pytest

from app.recsys.data.idmap import IdMap


def test_from_ids_sorts_and_dedups():
    m = IdMap.from_ids([30, 10, 20, 10])
    assert m.external.tolist() == [10, 20, 30]
    assert m.external.dtype == np.int64
    assert len(m) == 3


def test_to_index_marks_unknown_with_minus_one():
    m = IdMap.from_ids([10, 20, 30])
    assert m.to_index([30, 10, 15, 40, 5]).tolist() == [2, 0, -1, -1, -1]


def test_to_external_round_trip_keeps_padding():
    m = IdMap.from_ids([7, 3, 11])
    idx = m.to_index([11, 3])
    assert m.to_external(idx).tolist() == [11, 3]
    assert m.to_external(np.array([[0, -1]])).tolist() == [[3, -1]]


def test_to_external_rejects_out_of_range():
    with pytest.raises(IndexError):
        IdMap.from_ids([1, 2]).to_external([2])


def test_empty_map_knows_nothing():
    m = IdMap.from_ids(np.zeros(0, dtype=np.int64))
    assert len(m) == 0
    assert m.to_index([1, 2]).tolist() == [-1, -1]


def test_constructor_rejects_unsorted_and_non_integer():
    with pytest.raises(ValueError, match="sorted"):
        IdMap(np.array([2, 1]))
    with pytest.raises(ValueError, match="integer"):
        IdMap.from_ids(np.array([1.5, 2.0]))


def test_save_load_through_npz(tmp_path):
    arrays: dict[str, np.ndarray] = {}
    IdMap.from_ids([5, 1, 9]).save(arrays, "item")
    np.savez(tmp_path / "m.npz", **arrays)
    with np.load(tmp_path / "m.npz", allow_pickle=False) as npz:
        assert IdMap.load(npz, "item") == IdMap.from_ids([1, 5, 9])


def test_dense_and_sparse_ids_give_the_same_lookups():
    rng = np.random.default_rng(0)
    dense = IdMap.from_ids(rng.choice(np.arange(100, 400), size=200, replace=False))  # table path
    sparse = IdMap.from_ids(np.r_[dense.external, 10**15])  # one far id: binary-search path
    queries = np.r_[np.arange(90, 410), 10**15, -5]
    want = np.array([dense.external.tolist().index(q) if q in dense.external else -1 for q in queries])
    want[-2] = -1
    np.testing.assert_array_equal(dense.to_index(queries), want)
    want[-2] = len(dense)
    np.testing.assert_array_equal(sparse.to_index(queries), want)
