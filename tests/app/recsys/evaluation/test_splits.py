"""Holdout splits."""
from __future__ import annotations

import numpy as np
import pytest

from app.recsys.data.dataset import DAY_S, Interactions
from app.recsys.evaluation.splits import per_user_last_fraction, sample_users, time_holdout


def events(users, films, ts, types=None) -> Interactions:
    return Interactions.from_columns(
        {"user_id": users, "film_id": films, "ts": ts, "event_type": types or ["click"] * len(users)}
    )


def test_per_user_last_fraction_takes_latest_at_least_one():
    # user 1: 10 events -> last 2 (20%); user 2: 3 events -> floor(0.6) = 0 -> at least 1
    it = events([1] * 10 + [2] * 3, list(range(10)) + [7, 8, 9], list(range(10, 0, -1)) + [5.0, 6.0, 7.0])
    train, test = per_user_last_fraction(it, 0.2)
    # user 1's ts are 10..1 for films 0..9: the latest are films 0 (ts 10) and 1 (ts 9)
    assert sorted(zip(test.user_id.tolist(), test.film_id.tolist())) == [(1, 0), (1, 1), (2, 9)]
    assert len(train) == 10


def test_per_user_last_fraction_breaks_time_ties_by_film():
    train, test = per_user_last_fraction(events([1, 1, 1, 1, 1], [5, 3, 4, 1, 2], [1.0] * 5), 0.2)
    assert test.film_id.tolist() == [5]


def test_time_holdout_uses_global_cut():
    it = events([1, 2, 3], [1, 2, 3], [0.0, 5 * DAY_S, 10 * DAY_S])
    train, test = time_holdout(it, holdout_days=5)
    assert train.film_id.tolist() == [1] and test.film_id.tolist() == [2, 3]
    with pytest.raises(ValueError):
        time_holdout(it, 0)


def test_sample_users_keeps_every_event_of_the_chosen_users() -> None:
    users = np.repeat(np.arange(1, 101), 3)
    sample_of = events(users, np.arange(len(users)) + 1, np.arange(len(users), dtype=float))
    sample = sample_users(sample_of, 10)
    chosen = np.unique(sample.user_id)
    assert len(chosen) == 10
    assert len(sample) == 30  # all three events of each chosen user
    assert np.array_equal(sample_users(sample_of, 10).film_id, sample.film_id)  # fixed sample
    assert sample_users(sample_of, 100) is sample_of and sample_users(sample_of, None) is sample_of
