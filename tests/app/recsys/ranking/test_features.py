"""Feature definitions on hand-computed events: film snapshot, user state, the assembled matrix."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from app.recsys.data.dataset import DAY_S, Interactions, build_dataset
from app.recsys.data.idmap import IdMap
from app.recsys.data.load import Films
from app.recsys.ranking.candidates import Candidates
from app.recsys.ranking.features import (FILM_FEATURES, FilmSnapshot, UserTotals, assemble, feature_names,
                                         film_snapshot, live_user_state)

ITEMS = IdMap(np.array([10, 11, 12]))


def genres_of(film_genres: dict[int, list[str]]) -> sp.csr_matrix:
    films = np.array(sorted(film_genres))
    return Films(films, [""] * len(films), [film_genres[f] for f in films]).genre_matrix(ITEMS)[0]


def history(extra: list[tuple] = ()) -> Interactions:
    rows = [(1, 10, "play", 0, 0), (1, 10, "complete", 1, 0), (1, 10, "rate", 2, 8), (2, 10, "play", 3, 0),
            (2, 11, "play", 4, 0), (3, 11, "rate", 5, 4), *extra]
    users, films, kinds, days, ratings = zip(*rows)
    return Interactions.from_columns({"user_id": users, "film_id": films, "event_type": kinds,
                                      "ts": np.array(days, dtype=float) * DAY_S, "rating": ratings})


def snapshot(events: Interactions, as_of: float, genres: sp.csr_matrix | None = None) -> FilmSnapshot:
    """As the first level does: the training matrix of the events before `as_of`, and all events."""
    return film_snapshot(build_dataset(events.split_by_time(as_of)[0], items=ITEMS), events, as_of, genres)


def test_film_snapshot_is_shares_and_window_relative_times() -> None:
    snap = snapshot(history(), as_of=6 * DAY_S)
    got = dict(zip(FILM_FEATURES, snap.values.T))
    half = 0.05 * 6  # trending half-life: 5% of the 6-day history, in days
    trend = np.array([2 ** (-4 / half) + 2 ** (-3 / half), 2 ** (-2 / half) + 2 ** (-1 / half), 0.0])
    expected = {
        "i_viewers_share": [2 / 3, 2 / 3, 0],  # films' distinct users / 3 users
        "i_plays_share": [2, 1, 0],  # plays / all plays x films
        "i_completion": [0.5, 0, np.nan],
        "i_avg_rating": [8, 4, np.nan],
        "i_trend": trend / trend.sum() * 3,
        "i_days_since_last": [3 / 6, 1 / 6, np.nan],
        "i_age": [1, 2 / 6, np.nan],
    }
    for name, values in expected.items():
        np.testing.assert_allclose(got[name], values, rtol=1e-5, err_msg=name)
    assert (snap.as_of, snap.span) == (6 * DAY_S, 6 * DAY_S)


def test_features_as_of_t_read_no_event_at_or_after_t() -> None:
    before = snapshot(history(), as_of=6 * DAY_S)
    extreme = [(9, 12, "play", 6, 0), (9, 10, "rate", 7, 1), (8, 11, "complete", 6, 0)]
    after = snapshot(history(extreme), as_of=6 * DAY_S)
    np.testing.assert_array_equal(before.values, after.values)
    users = IdMap(np.array([1, 2, 3, 9]))
    dataset = build_dataset(history(extreme).split_by_time(6 * DAY_S)[0], users=users, items=ITEMS)
    totals = UserTotals.of(dataset, history(extreme), 6 * DAY_S)
    assert totals.events.tolist() == [3, 2, 1, 0] and np.isnan(totals.last_seen[3])
    moved = snapshot(history(extreme), as_of=8 * DAY_S)  # control: later, they count
    assert not np.array_equal(before.values, moved.values)
    with pytest.raises(ValueError, match="leak"):  # a training matrix that holds the future is refused
        film_snapshot(build_dataset(history(extreme), items=ITEMS), history(extreme), 6 * DAY_S)


def test_snapshot_pack_round_trip() -> None:
    genres = genres_of({10: ["Drama", "Comedy"], 11: ["Drama"]})
    snap = snapshot(history(), 6 * DAY_S, genres)
    back = FilmSnapshot.unpack(snap.pack())
    np.testing.assert_array_equal(back.values, snap.values)
    assert back.genres.toarray().tolist() == [[0.5, 0.5], [0.0, 1.0], [0.0, 0.0]]  # Comedy, Drama
    assert (back.items, back.as_of, back.span) == (ITEMS, snap.as_of, snap.span)


def test_the_live_user_state_is_the_offline_one_for_the_same_films_and_counts() -> None:
    events = history()
    genres = genres_of({10: ["Drama", "Comedy"], 11: ["Drama"]})
    snap = snapshot(events, 6 * DAY_S, genres)
    dataset = build_dataset(events, None, items=ITEMS)
    totals = UserTotals.of(dataset, events, 6 * DAY_S)
    offline = totals.states(np.array([1]), dataset.matrix[[1]], snap)  # user 2: films 10, 11
    live = live_user_state({"events": 2, "ratings": 0, "rating_sum": 0.0, "last_seen": 4 * DAY_S}, [1, 0], snap)
    for field in ("films", "events", "rating_sum", "ratings", "last_seen", "genre_share", "pop_pref"):
        np.testing.assert_allclose(getattr(live, field), getattr(offline, field), err_msg=field)
    np.testing.assert_allclose(offline.genre_share, [[0.25, 0.75]])  # film 10 half drama, film 11 drama


def test_assemble_orders_columns_as_feature_names() -> None:
    events = history()
    genres = genres_of({10: ["Drama"], 11: ["Comedy"], 12: ["Drama"]})
    snap = snapshot(events, 6 * DAY_S, genres)
    user = live_user_state({"events": 3, "ratings": 1, "rating_sum": 8.0, "last_seen": 3 * DAY_S}, [0], snap)
    cands = Candidates(("als", "recent"), 2, np.array([0, 0]), np.array([1, 2]),
                       np.array([[0.5, np.nan], [0.25, 0.7]], dtype=np.float32),
                       np.array([[1, 4], [2, 1]], dtype=np.float32))
    x = assemble(cands, snap, user, now=6 * DAY_S)
    names = feature_names(cands.sources)
    assert x.shape == (2, len(names)) and names[:4] == ["s_als", "r_als", "s_recent", "r_recent"]
    row = dict(zip(names, x[1]))
    assert (row["s_als"], row["r_als"], row["s_recent"], row["r_recent"], row["n_sources"]) == pytest.approx(
        (0.25, 2, 0.7, 1, 2))
    assert row["genre_match"] == 1.0 and dict(zip(names, x[0]))["genre_match"] == 0.0  # user: drama only
    assert row["pop_vs_user_pref"] == 0.0  # film 12 has no viewers; the user's film 10 has 2/3
    assert row["u_avg_rating"] == 8.0 and row["u_days_since_last"] == pytest.approx(3 / 6)
    assert row["u_films"] == pytest.approx(np.log1p(1)) and row["u_events"] == pytest.approx(np.log1p(3))
    assert np.isnan(dict(zip(names, x[0]))["s_recent"])
    assert sp.issparse(snap.genres)
