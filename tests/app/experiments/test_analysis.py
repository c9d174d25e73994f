"""Experiment analysis against the real ClickHouse: per-arm figures on hand-made
events (every number worked out in the comments), the SQL twin of the arm hash,
and simulated A/A and A/B traffic for the verdicts."""
from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Iterator

import numpy as np
import pytest
from clickhouse_driver import Client

from app.events import Event, new_event_id
from app.experiments import analysis
from app.experiments.assignment import challenger_sql, challenger_threshold, hash_seed, in_challenger
from app.experiments.model import Experiment, Guardrail, State
from app.experiments.verdict import Kind
from app.settings import Settings
from app.storage.clickhouse import client
from app.storage.interactions import insert_events

pytestmark = pytest.mark.integration
START = datetime(2026, 3, 1, tzinfo=timezone.utc)
NOW = datetime(2026, 3, 10, tzinfo=timezone.utc)  # window: Mar 1 .. Mar 9, both whole days


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


def ev(user: int, kind: str, when: str, film: int = 0, session: str = "", **fields: object) -> Event:
    return Event(new_event_id(), user, film, kind, at(when), session, **fields)


@pytest.fixture
def conn(clickhouse_settings: Settings) -> Iterator[Client]:
    conn = client(clickhouse_settings)
    yield conn
    conn.disconnect()


def running(experiment_id: str, share: float = 0.5, **changes: object) -> Experiment:
    e = Experiment(experiment_id, "v1", "v2", share=share, created_at=START, **changes)
    return e.moved_to(State.RUNNING, START)


def hand_made_events() -> list[Event]:
    # experiment "exp-hand" at 50 %: users 1 and 3 are control, 2, 4 and 5 challenger
    # (checked in test_hand_made_users_are_in_the_arms_the_comments_say)
    shown = {"source": "home"}
    return [
        # A = user 1 (control), exposed Mar 1 10:00. Before it: a play of film 9 that must not count.
        ev(1, "play", "2026-03-01 09:00:00", 9, "a0", duration_seconds=6000.0),
        ev(1, "progress", "2026-03-01 09:20:00", 9, "a0", watch_seconds=1000.0, duration_seconds=6000.0),
        ev(1, "impression", "2026-03-01 10:00:00", 1, "a1", model_version="v1", **shown),
        ev(1, "click", "2026-03-01 10:01:00", 1, "a1", model_version="v1", **shown),
        ev(1, "play", "2026-03-01 10:02:00", 1, "a1", duration_seconds=6000.0),
        ev(1, "progress", "2026-03-01 10:30:00", 1, "a1", watch_seconds=1800.0, duration_seconds=6000.0),
        ev(1, "complete", "2026-03-01 11:42:00", 1, "a1", watch_seconds=6000.0, duration_seconds=6000.0),
        ev(1, "rate", "2026-03-01 11:43:00", 1, "a1", rating=8.0),  # session a1: 10:00 -> 11:43 = 6180 s
        ev(1, "page_view", "2026-03-02 09:00:00", 0, "a2"),  # back on D1; session a2: 600 s
        ev(1, "page_view", "2026-03-02 09:10:00", 2, "a2"),
        # B = user 3 (control), exposed Mar 5 12:00: two impressions, one click and a double click
        ev(3, "impression", "2026-03-05 12:00:00", 2, "b1", model_version="v1", **shown),
        ev(3, "impression", "2026-03-05 12:00:00", 3, "b1", model_version="v1", **shown),
        ev(3, "click", "2026-03-05 12:00:30", 3, "b1", model_version="v1", **shown),
        ev(3, "click", "2026-03-05 12:00:40", 3, "b1", model_version="v1", **shown),  # unattributed
        ev(3, "play", "2026-03-05 12:01:00", 3, "b1", duration_seconds=7000.0),
        ev(3, "progress", "2026-03-05 12:31:00", 3, "b1", watch_seconds=1800.0, duration_seconds=7000.0),
        # C = user 2 (challenger), exposed Mar 3 08:00, two visits
        ev(2, "impression", "2026-03-03 08:00:00", 1, "c1", model_version="v2", **shown),
        ev(2, "click", "2026-03-03 08:01:00", 1, "c1", model_version="v2", **shown),
        ev(2, "play", "2026-03-03 08:02:00", 1, "c1", duration_seconds=6000.0),
        ev(2, "complete", "2026-03-03 09:42:00", 1, "c1", watch_seconds=6000.0, duration_seconds=6000.0),
        ev(2, "rate", "2026-03-03 09:43:00", 1, "c1", rating=10.0),  # 6180 s
        ev(2, "impression", "2026-03-04 08:00:00", 4, "c2", model_version="v2", **shown),
        ev(2, "click", "2026-03-04 08:00:10", 4, "c2", model_version="v2", **shown),
        ev(2, "play", "2026-03-04 08:01:00", 4, "c2", duration_seconds=5000.0),
        ev(2, "progress", "2026-03-04 08:51:00", 4, "c2", watch_seconds=3000.0, duration_seconds=5000.0),  # 3060 s
        ev(2, "page_view", "2026-03-10 01:00:00", 0, "c3"),  # after the window: ignored
        # D = user 4 (challenger), exposed Mar 9 20:00, looks and leaves (300 s)
        ev(4, "impression", "2026-03-09 20:00:00", 5, "d1", model_version="v2", **shown),
        ev(4, "page_view", "2026-03-09 20:05:00", 0, "d1"),
        # E = user 5: watches but is never shown a recommendation: not in the experiment
        ev(5, "play", "2026-03-04 10:00:00", 7, "e1", duration_seconds=5000.0),
    ]


def test_hand_made_users_are_in_the_arms_the_comments_say() -> None:
    mask = in_challenger(hash_seed("exp-hand"), challenger_threshold(0.5), np.array([1, 2, 3, 4, 5]))
    assert mask.tolist() == [False, True, False, True, True]


def test_per_arm_figures_by_hand(conn: Client) -> None:
    insert_events(conn, hand_made_events())
    report = analysis.analyse(conn, running("exp-hand"), NOW, replicates=200)
    control, challenger = report.arms["control"], report.arms["challenger"]
    assert (control.users, challenger.users) == (2, 2)  # user 5 was never exposed
    # control: A 9 user-days (Mar 1..9), B 5 (Mar 5..9); challenger: C 7 (Mar 3..9), D 1
    assert control.totals["days"] == 14 and challenger.totals["days"] == 8
    # impressions 1 + 2 = 3 and 1 + 1 + 1 = 3; attributed clicks 1 + 1 and 2 + 0; B's double click is unattributed
    assert (control.totals["impressions"], control.totals["clicks"], control.totals["unattributed_clicks"]) == (3, 2, 1)
    assert (challenger.totals["impressions"], challenger.totals["clicks"]) == (3, 2)
    # every impression carried its arm's version (v1 for control, v2 for the challenger)
    assert control.totals["impressions_own_version"] == 3 and challenger.totals["impressions_own_version"] == 3
    c, b = control.metrics, challenger.metrics
    assert c["ctr"] == pytest.approx(2 / 3) and b["ctr"] == pytest.approx(2 / 3)
    # watch per user-day: A 6000 / 9 (film 9 was before the exposure), B 1800 / 5; C 9000 / 7, D 0
    assert c["watch_time_per_user_day"] == pytest.approx((6000 / 9 + 1800 / 5) / 2)
    assert b["watch_time_per_user_day"] == pytest.approx((9000 / 7 + 0) / 2)
    assert c["plays_per_user_day"] == pytest.approx((1 / 9 + 1 / 5) / 2)
    # time on site: A 6180 + 600 (not session a0, before the exposure), B 1860; C 6180 + 3060, D 300
    assert c["time_on_site_per_user_day"] == pytest.approx((6780 / 9 + 1860 / 5) / 2)
    assert b["time_on_site_per_user_day"] == pytest.approx((9240 / 7 + 300 / 1) / 2)
    # completion: A completed film 1, B did not finish film 3 -> 1 / 2; C 1 of 2
    assert (c["completion_rate"], b["completion_rate"]) == (0.5, 0.5)
    assert (c["avg_rating"], b["avg_rating"]) == (8.0, 10.0)
    # D1: A back on Mar 2, B not: 1 / 2; C back on Mar 4, D's Mar 10 is outside the window: 1 / 1
    assert (c["d1_retention"], b["d1_retention"]) == (0.5, 1.0)
    # D7: only A's Mar 8 is inside the window (not active): 0 / 1; no challenger user is eligible
    assert c["d7_retention"] == 0.0 and math.isnan(b["d7_retention"])
    diff = report.differences["watch_time_per_user_day"]
    assert diff.relative == pytest.approx((9000 / 7 / 2) / ((6000 / 9 + 1800 / 5) / 2) - 1)
    assert report.differences["ctr"].relative == pytest.approx(0.0)
    # 2 users per arm is below the planned 1000: no verdict yet
    assert report.verdict.kind is Kind.NO_DIFFERENCE and report.verdict.more_users_per_arm >= 998
    assert report.to_json()["arms"]["challenger"]["metrics"]["d7_retention"] is None


def test_sql_arm_matches_python_for_many_users(conn: Client) -> None:
    e = running("exp-sql", share=0.3)
    rows = conn.execute(
        f"SELECT number AS user_id, {challenger_sql()} FROM numbers(1, 50000) ORDER BY user_id",
        {"seed": e.hash_seed, "threshold": e.threshold},
    )
    sql = np.array([bool(row[1]) for row in rows])
    assert sql.tolist() == in_challenger(e.hash_seed, e.threshold, np.arange(1, 50_001)).tolist()
    assert 0.29 < sql.mean() < 0.31


def simulated(experiment: Experiment, users: int, boost: float, seed: int) -> list[Event]:
    """Each user is exposed once a day for 5 days and watches an exponential time; the
    challenger arm watches `boost` times longer. Deterministic for the seed."""
    rng = np.random.default_rng(seed)
    ids = np.arange(1, users + 1)
    challenger = in_challenger(experiment.hash_seed, experiment.threshold, ids)
    events = []
    for user, is_b in zip(ids.tolist(), challenger.tolist()):
        for day in range(5):
            t = START.timestamp() + day * 86_400 + float(rng.integers(0, 40_000))
            session = f"s{user}-{day}"
            events.append(Event(new_event_id(), user, 1, "impression", t, session, source="home", model_version="v1"))
            if rng.random() < 0.4:
                events.append(Event(new_event_id(), user, 1, "click", t + 5, session, source="home", model_version="v1"))
            watched = float(round(rng.exponential(1800.0) * (boost if is_b else 1.0)))
            events.append(Event(new_event_id(), user, 1 + day, "play", t + 10, session, duration_seconds=9000.0))
            events.append(Event(new_event_id(), user, 1 + day, "progress", t + 10 + watched, session,
                                watch_seconds=min(watched, 9000.0), duration_seconds=9000.0))
    return events


def test_a_a_finds_no_winner_and_passes_the_sample_ratio_check(conn: Client) -> None:
    e = running("exp-aa", share=0.5, min_users_per_arm=300, guardrails=(Guardrail("ctr", 0.1),))
    insert_events(conn, simulated(e, 1_000, boost=1.0, seed=1))
    report = analysis.analyse(conn, e, datetime(2026, 3, 6, tzinfo=timezone.utc), replicates=300)
    assert report.arms["control"].users + report.arms["challenger"].users == 1_000
    assert not report.sample_ratio.mismatch
    assert report.verdict.kind is Kind.NO_DIFFERENCE, report.verdict
    diff = report.differences["watch_time_per_user_day"]
    assert diff.low < 0 < diff.high


def test_a_b_with_a_better_challenger_says_challenger_wins(conn: Client) -> None:
    e = running("exp-ab", share=0.5, min_users_per_arm=300, guardrails=(Guardrail("ctr", 0.1),))
    insert_events(conn, simulated(e, 1_000, boost=1.3, seed=2))
    report = analysis.analyse(conn, e, datetime(2026, 3, 6, tzinfo=timezone.utc), replicates=300)
    assert report.verdict.kind is Kind.CHALLENGER_WINS, report.verdict
    assert 0.15 < report.differences["watch_time_per_user_day"].relative < 0.45


def test_reverse_a_b_says_control_wins(conn: Client) -> None:
    e = running("exp-ba", share=0.5, min_users_per_arm=300, guardrails=(Guardrail("ctr", 0.1),))
    insert_events(conn, simulated(e, 1_000, boost=1 / 1.3, seed=3))
    report = analysis.analyse(conn, e, datetime(2026, 3, 6, tzinfo=timezone.utc), replicates=300)
    assert report.verdict.kind is Kind.CONTROL_WINS, report.verdict


def test_a_broken_split_is_invalid(conn: Client) -> None:
    # the site lost the impressions of a third of the challenger users: their exposure is missing
    e = running("exp-srm", share=0.5, min_users_per_arm=300)
    events = simulated(e, 1_000, boost=1.0, seed=4)
    dropped = {u for u in range(1, 1_001) if in_challenger(e.hash_seed, e.threshold, np.array([u]))[0] and u % 3 == 0}
    insert_events(conn, [x for x in events if x.user_id not in dropped])
    report = analysis.analyse(conn, e, datetime(2026, 3, 6, tzinfo=timezone.utc), replicates=100)
    assert report.sample_ratio.mismatch and report.verdict.text == "invalid (sample ratio mismatch)"


def test_baseline_for_planning(conn: Client) -> None:
    insert_events(conn, hand_made_events())
    value, variance, users = analysis.baseline(conn, "watch_time_per_user_day", NOW, days=9)
    # all four exposed users: (6000/9 + 1800/5 + 9000/7 + 0) / 4
    assert users == 4 and value == pytest.approx((6000 / 9 + 1800 / 5 + 9000 / 7) / 4)
    assert variance > 0


def test_an_experiment_without_traffic_has_no_verdict_yet(conn: Client) -> None:
    report = analysis.analyse(conn, running("exp-empty", min_users_per_arm=50), NOW, replicates=100)
    assert (report.arms["control"].users, report.arms["challenger"].users) == (0, 0)
    assert report.verdict.text == "no difference yet (50 more users per arm needed for the planned effect)"
    assert not report.sample_ratio.mismatch and report.to_json()["differences"]["ctr"]["relative"] is None
