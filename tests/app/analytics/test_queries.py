"""Click attribution (app.analytics.queries.CLICK_PAIRS / FUNNEL / UNATTRIBUTED_CLICKS)
against the real ClickHouse: hand-made cases, then random events checked against a
plain-Python reading of the rule and against the bound CTR <= 1."""
from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime, timezone
from typing import Iterator

import numpy as np
import pytest
from clickhouse_driver import Client

from app.analytics import queries as q
from app.analytics.api import DateRange
from app.events import Event, new_event_id
from app.settings import Settings
from app.storage.clickhouse import client
from app.storage.interactions import insert_events

MARCH = DateRange.parse("2026-03-01", "2026-03-02")
W = q.ATTRIBUTION_WINDOW_S


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


def ev(user: int, kind: str, when: str, film: int = 1, source: str = "home", version: str = "v1") -> Event:
    return Event(new_event_id(), user, film, kind, at(when), source=source, model_version=version)


@pytest.fixture
def conn(clickhouse_settings: Settings) -> Iterator[Client]:
    conn = client(clickhouse_settings)
    yield conn
    conn.disconnect()


def funnel(conn: Client) -> dict[tuple[str, str], tuple[int, int]]:
    return {(s, v): (i, c) for s, v, i, c in conn.execute(q.FUNNEL, MARCH.params())}


def unattributed(conn: Client) -> dict[tuple[str, str], int]:
    return {(s, v): n for s, v, n in conn.execute(q.UNATTRIBUTED_CLICKS, MARCH.params())}


def test_attribution_rule_by_hand(conn: Client) -> None:
    insert_events(conn, [
        # user 1: shown film 1 at 10:00, clicked at 10:01 -> attributed
        ev(1, "impression", "2026-03-01 10:00:00"), ev(1, "click", "2026-03-01 10:01:00"),
        # user 2: double click on one impression -> 1 attributed, 1 unattributed
        ev(2, "impression", "2026-03-01 10:00:00"), ev(2, "click", "2026-03-01 10:01:00"),
        ev(2, "click", "2026-03-01 10:01:01"),
        # user 3: clicked more than an hour after the impression -> unattributed (impression still counts)
        ev(3, "impression", "2026-03-01 10:00:00"), ev(3, "click", "2026-03-01 11:00:01"),
        # user 4: click at 10:00, impression after it -> unattributed
        ev(4, "click", "2026-03-01 10:00:00"), ev(4, "impression", "2026-03-01 10:00:30"),
        # user 5: shown by v2, the click says v1 -> unattributed to v1, and v2 has no click
        ev(5, "impression", "2026-03-01 10:00:00", version="v2"), ev(5, "click", "2026-03-01 10:00:10"),
        # user 6: film shown twice and clicked twice -> 2 attributed; exactly an hour later still counts
        ev(6, "impression", "2026-03-01 10:00:00"), ev(6, "impression", "2026-03-01 12:00:00"),
        ev(6, "click", "2026-03-01 11:00:00"), ev(6, "click", "2026-03-01 12:00:00"),
        # user 8: shown twice, then two clicks after the second impression: both go to the latest
        # impression, which takes one -> 1 attributed, 1 unattributed
        ev(8, "impression", "2026-03-01 10:00:00"), ev(8, "impression", "2026-03-01 10:05:00"),
        ev(8, "click", "2026-03-01 10:06:00"), ev(8, "click", "2026-03-01 10:07:00"),
        # user 7: a click from search without any impression (source '' as the site sends it) -> unattributed
        ev(7, "click", "2026-03-01 10:00:00", source="", version=""),
    ])
    # home/v1 impressions: users 1, 2, 3, 4, 6 (x2), 8 (x2) = 8; attributed clicks: 1 + 1 + 0 + 0 + 2 + 1 = 5
    assert funnel(conn) == {("home", "v1"): (8, 5), ("home", "v2"): (1, 0), ("", ""): (0, 0)}
    # unattributed: user 2's second click, user 3, user 4, user 5 (v1), user 8's second = 5 on home/v1; user 7
    assert unattributed(conn) == {("home", "v1"): 5, ("", ""): 1}


def test_clicks_from_the_range_only(conn: Client) -> None:
    # the impression on Feb 28 is outside the range: the click on Mar 1 cannot be attributed
    insert_events(conn, [ev(1, "impression", "2026-02-28 23:59:00"), ev(1, "click", "2026-03-01 00:00:30")])
    assert funnel(conn) == {("home", "v1"): (0, 0)}
    assert unattributed(conn) == {("home", "v1"): 1}


def reference(events: list[Event]) -> tuple[dict, dict]:
    """The rule read literally, in Python: per (source, version) impressions, attributed and unattributed clicks."""
    pairs: dict[tuple, dict[str, list[int]]] = defaultdict(lambda: {"impression": [], "click": []})
    for e in events:
        pairs[(e.user_id, e.film_id, e.source, e.model_version)][e.event_type].append(int(e.ts))
    shown, credited, left = Counter(), Counter(), Counter()
    for (_, _, source, version), times in pairs.items():
        impressions = sorted(times["impression"])
        clicked = set()
        for c in times["click"]:
            latest = sum(i <= c for i in impressions) - 1  # the latest impression at or before the click
            if latest >= 0 and c <= impressions[latest] + W:
                clicked.add(latest)
        shown[(source, version)] += len(impressions)
        credited[(source, version)] += len(clicked)
        left[(source, version)] += len(times["click"]) - len(clicked)
    return ({k: (shown[k], credited[k]) for k in shown}, {k: n for k, n in left.items() if n})


def test_random_events_match_the_rule_and_ctr_never_exceeds_one(conn: Client) -> None:
    rng = np.random.default_rng(11)
    start = at("2026-03-01 00:00:00")
    events = [
        Event(new_event_id(), int(rng.integers(1, 15)), int(rng.integers(1, 6)),
              str(rng.choice(["impression", "click"], p=[0.6, 0.4])), float(start + rng.integers(0, 6 * 3600)),
              source=str(rng.choice(["home", "search", ""])), model_version=str(rng.choice(["v1", "v2", ""])))
        for _ in range(3_000)
    ]
    insert_events(conn, events)
    expected_funnel, expected_left = reference(events)
    got = funnel(conn)
    assert got == expected_funnel
    assert unattributed(conn) == expected_left
    assert sum(c for _, c in got.values()) > 100 and sum(expected_left.values()) > 100  # both kinds occur
    assert all(clicks <= impressions for impressions, clicks in got.values())
