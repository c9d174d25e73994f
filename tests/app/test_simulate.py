"""The pure generator `app.simulate.generate`: determinism, time window, argument errors."""
from __future__ import annotations

import time

import numpy as np
import pytest

from app.simulate import DAY_S, generate

END = 1_750_000_000.0


def test_same_seed_and_end_give_identical_history() -> None:
    _, first = generate(100, 60, 3_000, seed=5, days=10, end_ts=END)
    _, second = generate(100, 60, 3_000, seed=5, days=10, end_ts=END)
    for a, b in zip(first.columns(), second.columns()):
        np.testing.assert_array_equal(a, b)


def test_other_seed_or_later_run_gives_new_events() -> None:
    _, base = generate(100, 60, 3_000, seed=5, days=10, end_ts=END)
    _, other_seed = generate(100, 60, 3_000, seed=6, days=10, end_ts=END)
    _, later = generate(100, 60, 3_000, seed=5, days=10, end_ts=END + 3_600)
    assert not set(base.event_id.tolist()) & set(other_seed.event_id.tolist())
    assert not set(base.event_id.tolist()) & set(later.event_id.tolist())
    assert not np.array_equal(base.film_id, other_seed.film_id)


@pytest.mark.parametrize("n", [0, 1, 17, 4_000])
def test_exactly_the_requested_number_of_events(n: int) -> None:
    _, events = generate(50, 30, n, seed=1, days=3, end_ts=END)
    assert len(events) == n == len(list(events))


def test_timestamps_inside_the_window_and_sorted() -> None:
    days = 7.0
    _, events = generate(200, 80, 10_000, seed=2, days=days, end_ts=END)
    assert events.ts.min() >= END - days * DAY_S
    assert events.ts.max() <= END
    assert np.all(np.diff(events.ts) >= 0)
    # Spread over the window, not bunched at one end.
    assert events.ts.max() - events.ts.min() > 0.8 * days * DAY_S


def test_default_end_is_now_and_never_in_the_future() -> None:
    before = time.time()
    _, events = generate(50, 30, 2_000, seed=3, days=1)
    assert events.ts.max() <= time.time()
    assert events.ts.min() >= before - DAY_S - 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"users": 0, "films": 10, "events": 10},
        {"users": 10, "films": 0, "events": 10},
        {"users": 10, "films": 10, "events": -1},
        {"users": 10, "films": 10, "events": 10, "days": 0},
    ],
)
def test_bad_arguments_raise_a_clear_error(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="users|films|events|days"):
        generate(**kwargs, end_ts=END)
