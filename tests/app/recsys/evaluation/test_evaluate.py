import numpy as np
import pytest

from app.recsys.data.dataset import Interactions, build_dataset
from app.recsys.evaluation.evaluate import Holdout, evaluate, evaluate_on, relevant_items
from app.recsys.models.popularity import PopularRecommender


def events(users, films, ts, types=None) -> Interactions:
    return Interactions.from_columns(
        {"user_id": users, "film_id": films, "ts": ts, "event_type": types or ["click"] * len(users)}
    )


def test_relevant_items_drop_unknown_films_users_and_seen_items():
    train = build_dataset(events([1, 1, 2], [10, 20, 20], [1.0, 2.0, 3.0]))
    test = events([1, 1, 1, 2, 3, 2], [20, 30, 10, 99, 10, 10], [4.0] * 6, ["click"] * 5 + ["impression"])
    # user 1: 20 and 10 already seen, 30 unknown -> nothing; user 2: 99 unknown, 10 only an impression -> nothing
    assert [r.tolist() for r in relevant_items(train, test)] == [[], []]
    test2 = events([2], [10], [4.0])
    assert [r.tolist() for r in relevant_items(train, test2)] == [[], [0]]


def test_evaluate_popular_hand_computed():
    # train: film 10 has 3 users, film 20 has 2, film 30 has 1 -> popular order 10, 20, 30
    train = build_dataset(events([1, 2, 3, 1, 2, 4], [10, 10, 10, 20, 20, 30], [1.0] * 6))
    # test: user 3 watches 20 and 30; user 4 watches 10; user 1 only an unknown film (skipped)
    test = events([3, 3, 4, 1], [20, 30, 10, 77], [2.0] * 4)
    out = evaluate(PopularRecommender().fit(train), train, test, k=2)
    # user 3 (seen 10): top-2 = [20, 30], both relevant -> recall 1, ndcg 1, map 1
    # user 4 (seen 30): top-2 = [10, 20], 10 relevant at rank 1 -> recall 1/min(1,2) = 1, ndcg 1, map 1
    assert out["recall@2"] == 1.0 and out["ndcg@2"] == pytest.approx(1.0) and out["map@2"] == 1.0
    assert out["users"] == 2
    # coverage: {20, 30, 10} = 3 of 3 items
    assert out["coverage@2"] == 1.0
    # novelty: shares over 4 users: 10 -> 3/4, 20 -> 2/4, 30 -> 1/4; recommended 20, 30, 10, 20
    expected = np.mean(-np.log2([2 / 4, 1 / 4, 3 / 4, 2 / 4]))
    assert out["novelty@2"] == pytest.approx(expected)


def test_per_user_ndcg_on_a_holdout_in_external_ids():
    train = build_dataset(events([1, 2, 3, 1, 2, 4], [10, 10, 10, 20, 20, 30], [1.0] * 6))
    test = events([3, 4, 1], [30, 10, 77], [2.0] * 3)  # user 1: only a film training never saw
    holdout = Holdout.from_split(train, test)
    assert holdout.users.tolist() == [3, 4] and [r.tolist() for r in holdout.relevant] == [[30], [10]]
    out = evaluate_on(PopularRecommender().fit(train), train, holdout, k=2)
    # user 3 (seen 10): [20, 30], the hit at rank 2 -> 1 / log2(3); user 4 (seen 30): [10, 20] -> 1
    np.testing.assert_allclose(out.ndcg, [1 / np.log2(3), 1.0])
    assert out.metrics["ndcg@2"] == pytest.approx(out.ndcg.mean()) and out.metrics["users"] == 2

    # a model whose matrix lacks user 4 is scored on the same users: nothing for user 4
    without_4 = build_dataset(events([1, 2, 3, 1, 2], [10, 10, 10, 20, 20], [1.0] * 5))
    other = evaluate_on(PopularRecommender().fit(without_4), without_4, holdout, k=2)
    np.testing.assert_allclose(other.ndcg, [0.0, 0.0])  # user 3: [20] only (30 unknown to it), no hit


def test_huge_external_ids_do_not_overflow_the_hit_test():
    big = 2**62
    train = build_dataset(events([1, 2, 2], [big + 1, big + 1, big + 2], [1.0, 1.0, 1.0]))
    holdout = Holdout.from_split(train, events([1], [big + 2], [2.0]))
    np.testing.assert_allclose(evaluate_on(PopularRecommender().fit(train), train, holdout, k=1).ndcg, [1.0])
