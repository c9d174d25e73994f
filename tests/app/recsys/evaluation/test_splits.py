"""Holdout splits."""
from __future__ import annotations

import numpy as np
import pytest

from app.recsys.data.dataset import DAY_S, Interactions, build_dataset
from app.recsys.evaluation.evaluate import Holdout
from app.recsys.evaluation.splits import (
    HoldoutCut,
    fixed_holdout,
    grow_holdout,
    holdout_sizes,
    per_user_last_fraction,
    sample_users,
    time_holdout,
)


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


# user: (film, ts) plays. f = first event, m = latest first contact with a film:
# u1 f=1 m=5, u2 f=2 m=6, u3 f=3 m=7, u4 f=4 m=4 (one film: never evaluable)
GROWING = events([1, 1, 2, 2, 3, 3, 4], [10, 11, 10, 12, 11, 10, 12], [1.0, 5.0, 2.0, 6.0, 3.0, 7.0, 4.0],
                 ["play"] * 7)


@pytest.mark.parametrize(
    ("min_users", "max_share", "expected"),
    [
        # T=7 holds u3 (1 user, 1/7 of events), T=6 u2 and u3 (2 users, 2/7): enough users first
        (2, 0.5, HoldoutCut(6.0, "min_users", 2, 2 / 7)),
        # 3 users need T=5 (3/7 of the events) but 2/7 >= 0.25 already at T=6: the share decides
        (3, 0.25, HoldoutCut(6.0, "max_share", 2, 2 / 7)),
        # never 4 users (u4 cannot be evaluated): the share decides at T=4
        (4, 0.55, HoldoutCut(4.0, "max_share", 3, 4 / 7)),
    ],
)
def test_the_holdout_grows_back_until_enough_users_or_events(min_users, max_share, expected) -> None:
    cut = grow_holdout(build_dataset(GROWING), GROWING, min_users, max_share)
    assert (cut.start, cut.rule, cut.users) == (expected.start, expected.rule, expected.users)
    assert cut.share == pytest.approx(expected.share)


@pytest.mark.parametrize(("start", "counted", "evaluated"), [(7.0, 1, 1), (6.0, 2, 2), (5.0, 3, 3), (4.0, 3, 2)])
def test_the_counted_users_are_the_ones_the_holdout_evaluates(start, counted, evaluated) -> None:
    """Up to films new to the whole catalog: from T=4, u2's film 12 has no event before T
    (u4's is at T), so no model can rank it and `Holdout` drops it; the count does not."""
    users, share = holdout_sizes(build_dataset(GROWING), np.sort(GROWING.ts), np.array([start]))
    assert users.tolist() == [counted] and share[0] == pytest.approx((8 - start) / 7)
    train, test = GROWING.split_by_time(start)
    assert len(Holdout.from_split(build_dataset(train), test)) == evaluated


def test_fixed_days_holdout_is_sized_the_same_way() -> None:
    day = events([1, 1, 2, 2], [10, 11, 10, 11], [0.0, 9 * DAY_S, 1 * DAY_S, 2 * DAY_S], ["play"] * 4)
    cut = fixed_holdout(build_dataset(day), day, holdout_days=3)  # from day 6: u1's film 11
    assert (cut.start, cut.rule, cut.users, cut.share) == (6 * DAY_S, "days", 1, 0.25)


def test_nothing_to_hold_out_and_bad_bounds() -> None:
    empty = events([], [], [])
    assert grow_holdout(build_dataset(empty), empty, 10, 0.2) is None
    with pytest.raises(ValueError):
        grow_holdout(build_dataset(GROWING), GROWING, 0, 0.2)
    with pytest.raises(ValueError):
        grow_holdout(build_dataset(GROWING), GROWING, 10, 1.0)


def test_label_split_takes_a_time_slice_when_it_teaches_enough_users():
    from app.recsys.evaluation.splits import label_split

    # 50 users, each with films 1..4 on days 1..4: the last day teaches every user a new film
    users = [u for u in range(1, 51) for _ in range(4)]
    it = events(users, [f for _ in range(50) for f in range(1, 5)], [d * DAY_S for _ in range(50) for d in range(1, 5)])
    split = label_split(it, min_users=50, max_share=0.3)
    assert (split.rule, split.as_of, split.users) == ("time", 4 * DAY_S, 50)
    assert split.stage.ts.max() < split.as_of <= split.labels.ts.min()  # later, never overlapping
    assert len(split.stage) + len(split.labels) == len(it)


def test_label_split_falls_back_to_each_users_last_events_when_time_teaches_too_few():
    from app.recsys.evaluation.splits import label_split

    # users rate in one sitting each, one user a day (an imported history): the newest 30%
    # of the events hold 3 users. Per user, everybody's last film u + 4 is a label; it teaches
    # users 1..9 (user 10's film 14 is unknown to the stage: no model can rank it)
    users = [u for u in range(1, 11) for _ in range(5)]
    ts = [u * DAY_S + i for u in range(1, 11) for i in range(5)]
    it = events(users, [u + i for u in range(1, 11) for i in range(5)], ts)
    split = label_split(it, min_users=8, max_share=0.3)
    assert (split.rule, split.users) == ("per_user", 9)
    assert split.labels.film_id.tolist() == [u + 4 for u in range(1, 11)]
    assert split.as_of == split.stage.max_ts + 1
    forced = label_split(it, min_users=8, max_share=0.3, rule="time")
    assert forced.rule == "time" and forced.users < 8
    with pytest.raises(ValueError, match="rule"):
        label_split(it, 8, rule="random")


def test_label_split_grows_towards_the_target_users_within_the_share():
    from app.recsys.evaluation.splits import label_split

    # 100 users, user u's last film on day 100 + u: each newer day teaches one more user
    users = [u for u in range(1, 101) for _ in range(3)]
    films = [f for u in range(1, 101) for f in (1, 2, 3 + u % 5)]
    ts = [d * DAY_S for u in range(1, 101) for d in (1, 2, 100 + u)]
    it = events(users, films, ts)
    small = label_split(it, min_users=10, max_share=0.3)
    assert (small.rule, small.users) == ("time", 10)
    grown = label_split(it, min_users=10, max_share=0.3, target_users=60)
    assert (grown.rule, grown.users) == ("time", 60)
    capped = label_split(it, min_users=10, max_share=0.105, target_users=60)  # 10.5% of 300 events: 32 users
    assert (capped.rule, capped.users) == ("time", 32)
