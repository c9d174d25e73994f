"""Client-side parts of app/recsys/data/load.py: deduplication of loaded rows, the genre matrix (the queries: tests/integration/test_load.py)."""
from __future__ import annotations

import numpy as np

from app.recsys.data.idmap import IdMap
from app.recsys.data.load import Films, one_per_key


def test_one_per_key_is_none_when_nothing_repeats() -> None:
    assert one_per_key(np.array([5, 1, 9], dtype=np.uint64)) is None
    assert one_per_key(np.array([], dtype=np.uint64)) is None


def test_one_per_key_keeps_the_first_copy_in_read_order() -> None:
    keys = np.array([7, 3, 7, 2**64 - 1, 3, 3, 0], dtype=np.uint64)
    assert one_per_key(keys).tolist() == [0, 1, 3, 6]


def test_genre_matrix_rows_follow_the_id_map_and_sum_to_one():
    films = Films(np.array([5, 7, 9]), ["a", "b", "c"], [["Drama", "Comedy"], [], ["Drama", "Drama"]])
    matrix, names = films.genre_matrix(IdMap(np.array([3, 5, 9])))  # film 3 unknown to the catalog, 7 not trained
    assert names == ["Comedy", "Drama"]
    np.testing.assert_allclose(matrix.toarray(), [[0, 0], [0.5, 0.5], [0, 1]])
