"""Request-time ranking: the same list as the offline two-level ranking of the same inputs."""
from __future__ import annotations

import numpy as np
import pytest

from app.recsys.data.dataset import Interactions
from app.recsys.ranking.candidates import union
from app.recsys.ranking.online import RequestRanker
from app.recsys.ranking.twolevel import TwoLevelRecommender
from tests.app.recsys.conftest import planted_interactions, small_two_level

GROUPS = 4


@pytest.fixture(scope="module")
def events() -> Interactions:
    return planted_interactions(n_groups=GROUPS, users_per_group=50, events_per_user=14)


@pytest.fixture(scope="module")
def model(events: Interactions) -> TwoLevelRecommender:
    return small_two_level(events)


def inputs(model: TwoLevelRecommender, user: int) -> dict:
    """What request time would know of a training user: films newest first, live counts, their vector."""
    first = model.first
    row = first.dataset.matrix[user]
    order = np.lexsort((row.indices, -first.dataset.last_ts[first.dataset.matrix.indptr[user]:
                                                           first.dataset.matrix.indptr[user + 1]]))
    films = model.items.to_external(row.indices[order]).tolist()
    t = first.totals
    record = {"events": t.events[user], "ratings": t.ratings[user], "rating_sum": t.rating_sum[user],
              "last_seen": t.last_seen[user]}
    return {"recent": films, "record": record, "vector": first.user_factors[user]}


def test_request_time_ranking_matches_the_offline_ranking_of_the_same_inputs(model: TwoLevelRecommender) -> None:
    request = RequestRanker.unpack(RequestRanker.of(model).pack())  # as the web reads it back
    users = np.arange(0, len(model.users), 7)
    offline_ids, offline_scores = model.recommend(users, 10)
    for i, user in enumerate(users):
        given = inputs(model, int(user))
        got = request.rank(given["recent"], given["record"], model.first.snapshot.as_of, 10,
                           vector=given["vector"])
        assert got.film_ids == model.items.to_external(offline_ids[i]).tolist(), f"user index {user}"
        np.testing.assert_allclose(got.scores, offline_scores[i], rtol=1e-5)


def test_a_new_user_folded_in_from_recent_plays_gets_their_taste_with_reasons(model: TwoLevelRecommender) -> None:
    request = RequestRanker.of(model)
    group_films = [1000 + 25 * 2 + k for k in (0, 1, 2, 3)]  # four popular films of group 2
    got = request.rank(group_films[::-1], None, model.first.snapshot.as_of, 10, explain=True)
    assert len(got.film_ids) == 10 and not set(got.film_ids) & set(group_films)
    assert np.mean([(f - 1000) // 25 == 2 for f in got.film_ids]) >= 0.7
    assert got.scores == sorted(got.scores, reverse=True)
    names = set(request.ranker.features) | {f"source:{s}" for s in request.sources}
    assert got.reasons is not None and len(got.reasons) == 10
    assert all(r.name in names and r.value > 0 for reasons in got.reasons for r in reasons)
    assert any(reasons for reasons in got.reasons)
    unknown = request.rank([999_999], None, model.first.snapshot.as_of, 5)  # nothing known: popular/trending only
    assert len(unknown.film_ids) == 5


def test_excluded_films_are_never_ranked(model: TwoLevelRecommender) -> None:
    request = RequestRanker.of(model)
    first = request.rank([1050, 1051], None, model.first.snapshot.as_of, 5)
    again = request.rank([1050, 1051], None, model.first.snapshot.as_of, 5, exclude=first.film_ids[:2])
    assert len(again.film_ids) == 5 and not set(first.film_ids[:2] + [1050, 1051]) & set(again.film_ids)


def test_the_item_item_source_scores_a_newcomers_history_as_offline(model: TwoLevelRecommender) -> None:
    """Item-kNN's features (score, rank) of a training user's candidates, offline from their training
    row and at request time from the bundle's matrix and their films as recent plays, are the same."""
    request = RequestRanker.unpack(RequestRanker.of(model).pack())
    j = model.first.source_names.index("item_knn")
    proposed = 0
    for user in range(0, len(model.users), 11):
        given = inputs(model, user)
        offline, _ = model.first.features(np.array([user]), request.n)
        batch = request.batch(given["recent"], vector=given["vector"])
        online = union(request._sources, batch, request.n)  # noqa: SLF001 (the sources `rank` ranks with)
        assert online.sources == offline.sources
        np.testing.assert_array_equal(online.items, offline.items)
        np.testing.assert_allclose(online.scores[:, j], offline.scores[:, j], rtol=1e-6)
        np.testing.assert_array_equal(online.ranks[:, j], offline.ranks[:, j])
        proposed += int((online.ranks[:, j] <= request.n).sum())
    assert proposed > 0
