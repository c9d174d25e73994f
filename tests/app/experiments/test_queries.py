"""Per-arm daily figures: the analysts' view `experiment_daily` and the parameterised
ARM_DAILY, on the hand-made events of test_analysis (numbers worked out there)."""
from __future__ import annotations

from datetime import date
from typing import Iterator

import pytest
from clickhouse_driver import Client

from app.experiments import analysis
from app.experiments import queries as q
from app.experiments import store
from app.experiments.model import Experiment, State
from app.settings import Settings
from app.storage.clickhouse import client
from app.storage.interactions import insert_events
from tests.app.experiments.test_analysis import NOW, hand_made_events, running

pytestmark = pytest.mark.integration
COLUMNS = q.DAILY_COLUMNS


@pytest.fixture
def conn(clickhouse_settings: Settings) -> Iterator[Client]:
    conn = client(clickhouse_settings)
    yield conn
    conn.disconnect()


def day(n: int, arm: str, **values: float) -> dict:
    return {"experiment_id": "exp-hand", "arm": arm, "day": date(2026, 3, n), **dict.fromkeys(q._COLUMNS, 0.0), **values}


EXPECTED = [
    # A (control) exposed Mar 1: session a1 6180 s (a0 was before the exposure), film 1 played and completed
    day(1, "control", exposed_users=1, active_users=1, site_seconds=6180, plays=1, ratings=1, rating_sum=8,
        impressions=1, clicks=1, viewings=1, completed_viewings=1, watch_seconds=6000),
    day(2, "control", active_users=1, site_seconds=600),  # A back on D1
    # C (challenger) exposed Mar 3, back Mar 4
    day(3, "challenger", exposed_users=1, active_users=1, site_seconds=6180, plays=1, ratings=1, rating_sum=10,
        impressions=1, clicks=1, viewings=1, completed_viewings=1, watch_seconds=6000),
    day(4, "challenger", active_users=1, site_seconds=3060, plays=1, impressions=1, clicks=1, viewings=1,
        watch_seconds=3000),
    # B (control) exposed Mar 5: two impressions, one attributed click (the double click is not)
    day(5, "control", exposed_users=1, active_users=1, site_seconds=1860, plays=1, impressions=2, clicks=1,
        viewings=1, watch_seconds=1800),
    day(9, "challenger", exposed_users=1, active_users=1, site_seconds=300, impressions=1),  # D
]


def test_arm_daily_by_hand_and_the_view_agrees(conn: Client) -> None:
    insert_events(conn, hand_made_events())
    e = running("exp-hand")
    params = {"experiment_id": e.id, "seed": e.hash_seed, "threshold": e.threshold,
              "start": int(e.started_at.timestamp()), "stop": int(NOW.timestamp())}
    rows = [dict(zip(COLUMNS, row)) for row in conn.execute(q.ARM_DAILY, params)]
    assert rows == EXPECTED
    # the view reads the window from the experiments table; a planned experiment is not in it
    store.save(conn, e.moved_to(State.STOPPED, NOW))
    store.save(conn, Experiment("exp-planned", "v1", "v2"))
    view = [dict(zip(COLUMNS, row)) for row in conn.execute(f"SELECT {', '.join(COLUMNS)} FROM experiment_daily")]
    assert view == EXPECTED


def test_daily_sums_match_the_report_totals(conn: Client) -> None:
    insert_events(conn, hand_made_events())
    e = running("exp-hand")
    report = analysis.analyse(conn, e, NOW, replicates=50)
    params = {"experiment_id": e.id, "seed": e.hash_seed, "threshold": e.threshold,
              "start": int(e.started_at.timestamp()), "stop": int(NOW.timestamp())}
    rows = [dict(zip(COLUMNS, row)) for row in conn.execute(q.ARM_DAILY, params)]
    for arm, figures in report.arms.items():
        daily = [r for r in rows if r["arm"] == arm]
        assert sum(r["exposed_users"] for r in daily) == figures.users
        for column in ("impressions", "clicks", "plays", "watch_seconds", "site_seconds"):
            assert sum(r[column] for r in daily) == figures.totals[column], (arm, column)
        assert all(r["clicks"] <= r["impressions"] and r["completed_viewings"] <= r["viewings"] for r in daily)
