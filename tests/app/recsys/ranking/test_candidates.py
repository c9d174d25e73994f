"""The candidate union and its sources, on hand-made scores."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from app.recsys.data.dataset import build_dataset
from app.recsys.models.itemknn import ItemKNNRecommender
from app.recsys.ranking.candidates import (FactorSource, ItemItemSource, ItemScoreSource, NeighbourSource,
                                           UserBatch, union)
from app.recsys.ranking.history import cut_rows, neighbours_of, recent_row, sparse_top
from tests.app.recsys.conftest import planted_interactions

ITEMS = 6


def seen(rows: list[list[int]]) -> sp.csr_matrix:
    data = [(r, c) for r, cols in enumerate(rows) for c in cols]
    r, c = zip(*data) if data else ((), ())
    return sp.csr_matrix((np.ones(len(r), dtype=np.float32), (r, c)), shape=(len(rows), ITEMS))


def test_union_has_every_sources_score_and_rank_for_every_candidate() -> None:
    factors = np.array([[3, 0], [2, 0], [0, 1], [0, 2], [1, 0.5], [0, 0]], dtype=np.float32)
    batch = UserBatch(seen=seen([[0], []]), vectors=np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32))
    als = FactorSource("als", factors)  # user 0: 1 (2), 4 (1) [0 is seen]; user 1: 3 (2), 2 (1)
    popular = ItemScoreSource("popular", np.array([6, 5, 4, 3, 2, 1], dtype=np.float32))  # 1, 2 / 0, 1
    cands = union([als, popular], batch, n=2)
    pairs = list(zip(cands.rows.tolist(), cands.items.tolist()))
    assert pairs == [(0, 1), (0, 2), (0, 4), (1, 0), (1, 1), (1, 2), (1, 3)]
    assert cands.ranks.tolist() == [[1, 1], [4, 2], [2, 4], [4, 1], [4, 2], [2, 4], [1, 4]]
    # a source scores the candidates it did not propose too (ALS: 0 . factors), rank 2n = 4
    assert cands.scores.tolist() == [[2, 5], [0, 4], [1, 2], [0, 6], [0, 5], [1, 4], [2, 3]]
    assert cands.n_sources.tolist() == [2, 1, 1, 1, 1, 1, 1]
    assert cands.group_sizes(2).tolist() == [3, 4]


def test_a_source_without_vectors_proposes_nothing_and_scores_nan() -> None:
    batch = UserBatch(seen=seen([[]]))
    cands = union([FactorSource("als", np.ones((ITEMS, 2))), ItemScoreSource("popular", np.arange(ITEMS))], batch, 3)
    assert np.isnan(cands.scores[:, 0]).all() and (cands.ranks[:, 0] == 6).all()
    assert sorted(cands.items.tolist()) == [3, 4, 5]


def test_neighbour_source_sums_similarities_of_recent_plays_without_the_users_films() -> None:
    neighbours = sp.csr_matrix(np.array([
        [0, .9, .1, 0, 0, 0],
        [.9, 0, 0, .5, 0, 0],
        [0, 0, 0, 0, 0, .7],
        [0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0],
    ], dtype=np.float32))
    recent = recent_row([1, 0, 2], ITEMS)  # newest first: weights 1, 0.5, 0.25
    assert recent.toarray().tolist() == [[0.5, 1.0, 0.25, 0, 0, 0]]
    batch = UserBatch(seen=seen([[0, 1, 2]]), recent=recent)
    source = NeighbourSource("recent", neighbours)
    ids, scores = source.top(batch, 3)
    # film 3: 1.0 x .5 ; film 5: .25 x .7 ; films 1, 2 are the user's own
    assert ids.tolist() == [[3, 5, -1]] and scores[0, :2] == pytest.approx([0.5, 0.175])
    assert source.score(batch, np.array([0, 0]), np.array([4, 5])) == pytest.approx([0.0, 0.175])



WEIGHTS = np.array([  # an item-item matrix (W[j, film]: what having film j adds to film)
    [0, .9, .1, 0, 0, 0],
    [.9, 0, 0, .5, 0, 0],
    [0, 0, 0, 0, .3, .7],
    [0, .2, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0],
    [0, 0, 0, 0, 0, 0],
], dtype=np.float32)


def test_item_item_source_sums_the_weights_of_every_film_of_the_users_history() -> None:
    # user 0 has films 0, 2 (stored weights 5 and 0.5 count as 1 each); user 1 has film 1
    history = sp.csr_matrix(np.array([[5, 0, .5, 0, 0, 0], [0, 1, 0, 0, 0, 0]], dtype=np.float32))
    batch = UserBatch(seen=history)
    source = ItemItemSource("item_knn", sp.csr_matrix(WEIGHTS))
    ids, scores = source.top(batch, 3)
    # user 0: film 1 = .9 (from 0), film 5 = .7, film 4 = .3 (from 2); 0 and 2 are their own
    # user 1: film 0 = .9, film 3 = .5
    assert ids.tolist() == [[1, 5, 4], [0, 3, -1]]
    assert scores[0] == pytest.approx([0.9, 0.7, 0.3]) and scores[1, :2] == pytest.approx([0.9, 0.5])
    assert source.score(batch, np.array([0, 0, 1]), np.array([3, 5, 4])) == pytest.approx([0.0, 0.7, 0.0])
    cands = union([source], batch, 2)  # the union carries the same scores and ranks
    assert list(zip(cands.rows.tolist(), cands.items.tolist())) == [(0, 1), (0, 5), (1, 0), (1, 3)]
    assert cands.scores[:, 0] == pytest.approx([0.9, 0.7, 0.9, 0.5]) and cands.ranks[:, 0].tolist() == [1, 2, 1, 2]


def test_item_item_source_of_a_newcomers_recent_plays_is_that_of_the_same_training_row() -> None:
    """Request time: the newcomer's history is their recent plays (`seen`, weight 1); offline: the
    training row. The same films give the same candidates and scores whatever their stored weights."""
    source = ItemItemSource("ease", sp.csr_matrix(WEIGHTS))
    offline = UserBatch(seen=sp.csr_matrix(np.array([[0, 3, 2, 0, 0, 0]], dtype=np.float32)),
                        recent=recent_row([2, 1], ITEMS))
    online = UserBatch(seen=seen([[1, 2]]), recent=recent_row([1, 2], ITEMS))  # another order, weights 1
    for a, b in zip(source.top(offline, 4), source.top(online, 4)):
        np.testing.assert_array_equal(a, b)
    # film 0 = .9 (from 1), 3 = .5 (from 1), 5 = .7, 4 = .3 (from 2)
    assert source.top(online, 4)[0].tolist() == [[0, 5, 3, 4]]


@pytest.mark.parametrize("seed", range(5))
def test_dropping_seen_films_is_the_sparse_formula(seed: int) -> None:
    from app.recsys.ranking.candidates import _drop_seen

    rng = np.random.default_rng(seed)
    product = sp.random(7, 40, density=0.3, format="csr", dtype=np.float32, random_state=rng)
    product.data[::5] = 0.0  # explicit zeros go too
    seen = sp.random(7, 40, density=0.2, format="csr", dtype=np.float32, random_state=rng)
    expected = product - product.multiply(seen > 0)
    expected.eliminate_zeros()
    expected.sort_indices()
    got = _drop_seen(product.copy(), seen)
    assert (got.indptr.tolist(), got.indices.tolist()) == (expected.indptr.tolist(), expected.indices.tolist())
    assert got.data.tobytes() == expected.data.tobytes() and got.dtype == expected.dtype


@pytest.mark.parametrize("seed", range(5))
def test_one_users_sources_answer_as_for_a_batch(seed: int) -> None:
    """The request-time shortcuts (popular/trending of one user, neighbour scores by key search)
    give what the batch code gives for that user's row."""
    rng = np.random.default_rng(seed)
    films = 60
    scores = rng.random(films).astype(np.float32)
    scores[rng.integers(0, films, 5)] = scores[0]  # ties keep the film order
    seen = sp.random(4, films, density=0.2, format="csr", dtype=np.float32, random_state=rng)
    seen.data[:] = 1.0
    source = ItemScoreSource("popular", scores)
    batch = UserBatch(seen=seen)
    many = source.top(batch, 10)
    for row in range(4):
        one = source.top(UserBatch(seen=seen[row]), 10)
        assert one[0].tolist() == many[0][row:row + 1].tolist() and one[1].tobytes() == many[1][row:row + 1].tobytes()
    neighbours = sp.random(films, films, density=0.1, format="csr", dtype=np.float32, random_state=rng)
    nb = NeighbourSource("recent", neighbours)
    recent = sp.random(4, films, density=0.05, format="csr", dtype=np.float32, random_state=rng)
    nb_batch = UserBatch(seen=seen, recent=recent)
    rows, items = np.repeat(np.arange(4), films), np.tile(np.arange(films), 4)
    expected = np.asarray(nb._scores(nb_batch)[rows, items], dtype=np.float32).ravel()
    assert nb.score(nb_batch, rows, items).tobytes() == expected.tobytes()


@pytest.mark.parametrize("seed", range(6))
def test_sparse_top_is_the_full_sort_of_each_row(seed: int) -> None:
    """The cut at each row's n-th value changes nothing: a stable sort of every entry, ties (many, small
    integer scores) to the smaller film."""
    rng = np.random.default_rng(seed)
    matrix = sp.random(30, 40, density=rng.uniform(0.05, 0.9), format="csr", random_state=seed, dtype=np.float32)
    matrix.data = rng.integers(1, 4, len(matrix.data)).astype(np.float32)
    n = int(rng.integers(1, 12))
    ids, scores = sparse_top(matrix, n)
    for row in range(matrix.shape[0]):
        cols, data = matrix[row].indices, matrix[row].data
        order = np.lexsort((cols, -data))[:n]
        assert ids[row, :len(order)].tolist() == cols[order].tolist() and (ids[row, len(order):] == -1).all()
        assert scores[row, :len(order)].tolist() == data[order].tolist()
    kept = cut_rows(matrix, n)
    assert kept.shape == matrix.shape and (np.diff(kept.indptr) == np.minimum(np.diff(matrix.indptr), n)).all()
    assert sorted(kept[3].indices.tolist()) == sorted(ids[3][ids[3] >= 0].tolist())


def test_item_knn_neighbours_are_its_similarity_rows_cut_as_similar_items_would() -> None:
    model = ItemKNNRecommender(neighbours=30).fit(build_dataset(planted_interactions(seed=3)))
    for k in (5, 30):
        fast = neighbours_of(model, k)
        ids, scores = model.similar_items(np.arange(len(model.items)), k)  # the generic path, row by row
        for film in range(len(model.items)):
            row = fast[film]
            expected = dict(zip(ids[film][scores[film] > 0].tolist(), scores[film][scores[film] > 0].tolist()))
            assert sorted(row.data.tolist()) == pytest.approx(sorted(expected.values()))
            assert len(row.indices) == len(expected)
