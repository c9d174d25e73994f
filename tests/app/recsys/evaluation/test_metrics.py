import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
import pytest

from app.recsys.evaluation.metrics import MAP, NDCG, Coverage, HitRate, Novelty, Recall, compute_metrics, hit_matrix

# Four users, K = 4. User "c" has no relevant item left and is skipped.
RECOMMENDED = np.array(
    [
        [1, 2, 3, 4],  # a: relevant {2, 4, 9} -> hits 0 1 0 1
        [5, 6, -1, -1],  # b: relevant {6}      -> hits 0 1 0 0 (padding never hits)
        [9, 0, 1, 2],  # c: relevant {}       -> skipped, not in coverage either
        [7, 8, 1, 2],  # d: relevant {3}      -> no hit
    ]
)
RELEVANT = [np.array([2, 4, 9]), np.array([6]), np.array([], dtype=np.int64), np.array([3])]


def test_hit_matrix():
    hits, n_relevant = hit_matrix(RECOMMENDED, RELEVANT)
    assert n_relevant.tolist() == [3, 1, 0, 1]
    assert hits.astype(int).tolist() == [
        [0, 1, 0, 1],
        [0, 1, 0, 0],
        [0, 0, 0, 0],
        [0, 0, 0, 0],
    ]


def test_all_metrics_hand_computed():
    out = compute_metrics(
        RECOMMENDED,
        RELEVANT,
        [Recall(4), NDCG(4), MAP(4), HitRate(4), Coverage(4, n_items=10)],
    )
    # recall: a 2/min(3,4) = 2/3, b 1/min(1,4) = 1, d 0  -> mean 5/9
    assert out["recall@4"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    # ndcg: a DCG = 1/log2(3) + 1/log2(5), IDCG = 1 + 1/log2(3) + 1/log2(4) (3 relevant);
    #       b DCG = 1/log2(3), IDCG = 1; d 0
    ndcg_a = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3) + 1 / math.log2(4))
    ndcg_b = 1 / math.log2(3)
    assert out["ndcg@4"] == pytest.approx((ndcg_a + ndcg_b + 0) / 3)
    assert ndcg_a == pytest.approx(0.49819, abs=1e-5)
    # map: a (P@2 = 1/2 + P@4 = 2/4) / 3 = 1/3; b (P@2 = 1/2) / 1 = 1/2; d 0 -> mean 5/18
    assert out["map@4"] == pytest.approx((1 / 3 + 1 / 2 + 0) / 3)
    # hit rate: a and b hit -> 2/3
    assert out["hit_rate@4"] == pytest.approx(2 / 3)
    # coverage over a, b, d: items {1..8} = 8 of 10 (c's 9 and 0 do not count)
    assert out["coverage@4"] == pytest.approx(0.8)
    assert out["users"] == 3


def test_cutoff_below_list_length():
    # K = 2 for user a: hits 0 1 -> recall 1/min(3,2) = 1/2; ndcg (1/log2 3) / (1 + 1/log2 3);
    # map P@2 * 1 / 2 = 1/4
    out = compute_metrics(RECOMMENDED[:1], RELEVANT[:1], [Recall(2), NDCG(2), MAP(2)])
    assert out["recall@2"] == pytest.approx(0.5)
    assert out["ndcg@2"] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    assert out["map@2"] == pytest.approx(0.25)


def test_perfect_ranking_scores_one():
    out = compute_metrics(np.array([[3, 1, 2]]), [np.array([1, 2, 3])], [Recall(3), NDCG(3), MAP(3)])
    assert out == {"recall@3": 1.0, "ndcg@3": pytest.approx(1.0), "map@3": 1.0, "users": 1.0}


def test_duplicate_relevant_items_count_once():
    # relevant {2, 2} is one item: recall 1/min(1, 2) = 1
    assert compute_metrics(np.array([[2, 5]]), [np.array([2, 2])], [Recall(2)])["recall@2"] == 1.0


def test_novelty_is_mean_self_information():
    # shares 0.5 and 0.25 -> -log2 = 1 and 2 -> mean 1.5 (padding ignored)
    novelty = Novelty(3, popularity_share=np.array([0.5, 0.25, 1.0]))
    assert novelty.value(np.array([[0, 1, -1]])) == pytest.approx(1.5)


def test_bad_input():
    with pytest.raises(ValueError, match="k must be >= 1"):
        Recall(0)
    with pytest.raises(ValueError, match="relevant sets"):
        hit_matrix(RECOMMENDED, RELEVANT[:2])
    with pytest.raises(ValueError, match="repeats an item"):
        compute_metrics(np.array([[3, 3, -1]]), [np.array([3])], [Recall(3)])
    # padding may repeat
    assert compute_metrics(np.array([[3, -1, -1]]), [np.array([3])], [Recall(3)])["recall@3"] == 1.0


@given(
    rows=st.lists(
        st.tuples(st.permutations(range(-1, 30)).map(lambda p: p[:5]), st.sets(st.integers(0, 30), max_size=8)),
        min_size=1,
        max_size=20,
    )
)
def test_ranking_metrics_stay_within_bounds_and_agree_on_hits(rows):
    recommended = np.array([r for r, _ in rows])
    relevant = [np.array(sorted(s), dtype=np.int64) for _, s in rows]
    out = compute_metrics(recommended, relevant, [Recall(5), NDCG(5), MAP(5), HitRate(5)])
    for key in ("recall@5", "ndcg@5", "map@5", "hit_rate@5"):
        assert 0.0 <= out[key] <= 1.0 + 1e-9
    # a user with any hit has a positive recall, ndcg and map: all three are zero together
    assert (out["recall@5"] == 0) == (out["ndcg@5"] == 0) == (out["map@5"] == 0) == (out["hit_rate@5"] == 0)
