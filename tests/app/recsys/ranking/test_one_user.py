"""The one-user path of request-time ranking gives exactly the batch path's candidates, features and list.

`RequestRanker.rank` goes through `union_one` (each source's `top_one`/`score_one`)
and the dense sums of `live_user_state` and `assemble`; the batch path is `union` of
the same user as a batch of one, what the offline ranking runs. Exactness matters
beyond the order: the ranker's trees compare features with thresholds, so a
last-bit difference can move a film. Compared on random users, histories, live
counts and times, on the planted model and on a scrambled copy (random
multi-genre films stored out of order, random neighbours with ties and negative
similarities), where a summation order difference would show.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.recsys.data.dataset import DAY_S
from app.recsys.ranking.candidates import union, union_one
from app.recsys.ranking.recall import top_per_row
from app.recsys.data.idmap import IdMap
from app.recsys.ranking.features import FilmSnapshot, UserTotals, _genre_match, assemble, live_user_state
from app.recsys.ranking.online import RequestRanker
from tests.app.recsys.conftest import planted_interactions, small_two_level


@pytest.fixture(scope="module")
def planted() -> RequestRanker:
    model = small_two_level(planted_interactions(n_groups=4, users_per_group=50, events_per_user=14))
    return RequestRanker.unpack(RequestRanker.of(model).pack())  # as the web reads it back


@pytest.fixture(scope="module")
def scrambled(planted: RequestRanker) -> RequestRanker:
    rng = np.random.default_rng(7)
    films, genres = len(planted.snapshot.items), 9
    per_film = rng.integers(0, 6, films)
    rows = np.repeat(np.arange(films), per_film)
    cols = np.concatenate([rng.permutation(genres)[:k] for k in per_film])  # distinct, not sorted
    shares = rng.random(len(rows)).astype(np.float32)
    g = sp.csr_matrix((shares, cols, np.r_[0, np.cumsum(per_film)]), shape=(films, genres))
    snapshot = FilmSnapshot(planted.snapshot.items, planted.snapshot.values, g, planted.snapshot.as_of,
                            planted.snapshot.span)

    def weights() -> sp.csr_matrix:  # rounded to a few values: ties between films; some negative
        return sp.random(films, films, density=0.15, random_state=rng, dtype=np.float32,
                         data_rvs=lambda k: (rng.integers(-2, 9, k) / 8).astype(np.float32)).tocsr()

    return dataclasses.replace(planted, snapshot=snapshot, neighbours=weights(),
                               item_item={name: weights() for name in planted.item_item})


def users(ranker_films: np.ndarray) -> st.SearchStrategy[dict]:
    films = st.sampled_from(ranker_films.tolist())
    counts = st.floats(0, 1e4, allow_nan=False).map(lambda x: float(int(x)))
    record = st.none() | st.fixed_dictionaries({
        "events": counts, "ratings": counts, "rating_sum": st.floats(0, 5e4, allow_nan=False),
        "last_seen": st.floats(-1.0, 1.0) | st.just(0.0)})
    return st.fixed_dictionaries({
        "recent": st.lists(films | st.integers(1, 10**6), max_size=12),  # unknown films too, repeats
        "exclude": st.lists(films, max_size=6),
        "record": record,
        "days": st.floats(0, 400, allow_nan=False),
        "limit": st.integers(1, 60),
        "own_vector": st.booleans(),
    })


def check_same(request: RequestRanker, given: dict) -> None:
    snapshot = request.snapshot
    now = snapshot.as_of + given["days"] * DAY_S
    record = given["record"]
    if record is not None:
        record = {**record, "last_seen": snapshot.as_of + record["last_seen"] * 30 * DAY_S}
    vector = None
    if given["own_vector"]:
        vector = np.random.default_rng(len(given["recent"])).normal(size=request.foldin.item_factors.shape[1])
    user = request.user(given["recent"], given["exclude"], vector)
    one = union_one(request._sources, user, request.n)  # noqa: SLF001
    batch = union(request._sources, request.batch(given["recent"], given["exclude"], vector), request.n)  # noqa: SLF001
    for field in ("rows", "items", "scores", "ranks"):
        np.testing.assert_array_equal(getattr(one, field), getattr(batch, field), err_msg=field)
    state = request.state(given["recent"], record)
    np.testing.assert_array_equal(assemble(one, snapshot, state, now), assemble(batch, snapshot, state, now))
    got = request.rank(given["recent"], record, now, given["limit"], given["exclude"], vector)
    scores = request.ranker.predict(assemble(batch, snapshot, state, now))
    ids, top = top_per_row(batch.rows, batch.items, scores, 1, given["limit"])
    keep = ids[0] >= 0
    assert got.film_ids == snapshot.items.to_external(ids[0][keep]).tolist()
    assert got.scores == top[0][keep].tolist()  # exactly: the same features through the same trees


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_one_user_path_is_the_batch_path_on_the_planted_model(planted: RequestRanker, data: st.DataObject) -> None:
    check_same(planted, data.draw(users(planted.snapshot.items.external)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_one_user_path_is_the_batch_path_with_many_genres_and_tied_neighbours(scrambled: RequestRanker,
                                                                              data: st.DataObject) -> None:
    check_same(scrambled, data.draw(users(scrambled.snapshot.items.external)))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(films=st.lists(st.integers(-1, 99), max_size=15))
def test_live_state_sums_are_the_offline_ones_bit_for_bit(scrambled: RequestRanker, films: list[int]) -> None:
    """genre shares and the mean viewer share, summed densely at request time, equal the offline
    sparse products (`UserTotals.states`) of the same films exactly."""
    snapshot = scrambled.snapshot
    live = live_user_state(None, films, snapshot)
    known = sorted({f for f in films if f >= 0})
    seen = sp.csr_matrix((np.ones(len(known), dtype=np.float32), known, [0, len(known)]),
                         shape=(1, len(snapshot.items)))
    offline = UserTotals(np.zeros(1), np.zeros(1), np.zeros(1), np.zeros(1)).states(np.array([0]), seen, snapshot)
    np.testing.assert_array_equal(live.genre_share, offline.genre_share)
    np.testing.assert_array_equal(live.pop_pref, offline.pop_pref)
    assert live.films.tolist() == offline.films.tolist()


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31), pairs=st.integers(0, 600), users_n=st.integers(1, 5))
def test_genre_match_is_scipys_sum(seed: int, pairs: int, users_n: int) -> None:
    """`assemble`'s genre match equals the sparse row product it replaced, bit for bit (float32
    products added in each film's stored order), for any batch."""
    rng = np.random.default_rng(seed)
    films, genres = 40, int(rng.integers(1, 12))
    g = sp.random(films, genres, density=float(rng.random()), random_state=rng, dtype=np.float32).tocsr()
    order = np.concatenate([lo + rng.permutation(hi - lo) for lo, hi in zip(g.indptr[:-1], g.indptr[1:])])
    g = sp.csr_matrix((g.data[order], g.indices[order], g.indptr), shape=g.shape)  # stored out of order
    snapshot = FilmSnapshot(IdMap(np.arange(films)), np.zeros((films, 7), dtype=np.float32), g, 0.0, 1.0)
    shares = rng.random((users_n, genres)).astype(np.float32)
    rows, items = np.sort(rng.integers(0, users_n, pairs)), rng.integers(0, films, pairs)
    want = np.asarray(g[items].multiply(shares[rows]).sum(axis=1)).ravel() if pairs else np.zeros(0)
    np.testing.assert_array_equal(_genre_match(snapshot, rows, items, shares), want.astype(np.float32))
