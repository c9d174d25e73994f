"""Live sessions built from a recommendation answer (the pure part of the feedback loop)."""
from __future__ import annotations

import numpy as np
import pytest

from app.events import parse_event
from app.simulate import DAY_S
from app.simulator.live import Shown, live_session
from app.simulator.world import build_world

NOW = 1_750_000_000.0


@pytest.fixture(scope="module")
def world():
    return build_world(200, 100, seed=3, window_start=NOW - 30 * DAY_S, window_end=NOW)


def _best_and_worst(world, user: int) -> tuple[list[int], list[int]]:
    aff = world.affinity(np.full(len(world.catalog), user), np.arange(len(world.catalog)))
    order = np.argsort(-aff)
    return (order[:10] + 1).tolist(), (order[-10:] + 1).tolist()


def test_impressions_and_clicks_carry_the_answer_attribution(world) -> None:
    rng = np.random.default_rng(0)
    best, _ = _best_and_worst(world, 5)
    shown = Shown(best + [10_000], "als", "v42")  # an id unknown to the catalog is not shown
    events = [e for _ in range(20) for e in live_session(world, rng, 5, shown, NOW)]
    impressions = [e for e in events if e.event_type == "impression"]
    assert len(impressions) == 20 * 10
    assert {(e.source, e.model_version) for e in impressions} == {("als", "v42")}
    assert sorted({e.position for e in impressions}) == list(range(10))
    clicks = [e for e in events if e.event_type == "click"]
    attributed = [e for e in clicks if e.source]
    assert attributed and all(e.model_version == "v42" and e.film_id == best[e.position] for e in attributed)
    assert all(e.user_id == 6 for e in events)


def test_every_live_event_is_valid_and_not_in_the_future(world) -> None:
    rng = np.random.default_rng(1)
    best, worst = _best_and_worst(world, 7)
    for shown in (Shown(best, "als", "v1"), Shown(worst, "popular", ""), Shown([], "", "")):
        events = live_session(world, rng, 7, shown, NOW)
        assert events[0].event_type == "page_view" and events[0].film_id == 0
        assert len({e.session_id for e in events}) == 1
        assert [e.ts for e in events] == sorted(e.ts for e in events)
        for event in events:
            assert NOW - 1 <= event.ts <= NOW
            assert parse_event(event.to_bytes(), now=NOW) == event


def test_clicks_rise_with_taste_match(world) -> None:
    rng = np.random.default_rng(2)
    clicks = {"best": 0, "worst": 0}
    for user in range(50):
        best, worst = _best_and_worst(world, user)
        for name, films in (("best", best), ("worst", worst)):
            session = live_session(world, rng, user, Shown(films, "als", "v1"), NOW)
            clicks[name] += sum(e.event_type == "click" and e.source == "als" for e in session)
    assert clicks["best"] > 3 * clicks["worst"]


def test_click_probability_by_hand() -> None:
    from app.simulator.live import CLICK_HALF_APPEAL, CLICK_MAX, click_probability

    # an appeal of CLICK_HALF_APPEAL (20 average films) gets half of CLICK_MAX (0.35) at the top: 0.175;
    # position 5 divides by 1 + 0.2 * 5 = 2
    p = click_probability(np.array([CLICK_HALF_APPEAL, CLICK_HALF_APPEAL, 0.0]), np.array([0, 5, 0]))
    np.testing.assert_allclose(p, [CLICK_MAX / 2, CLICK_MAX / 4, 0.0])
