"""Metric maths on hand-built events, against the real ClickHouse (a fresh
database per test). Every expected number is worked out in the comments."""
from __future__ import annotations

import threading
from datetime import datetime, timezone
from typing import Iterator

import pytest
from clickhouse_driver import Client

from app.analytics import api
from app.analytics.api import DateRange, InvalidRange
from app.events import Event, new_event_id
from app.settings import Settings
from app.storage.clickhouse import client
from app.storage.interactions import insert_events
from app.telemetry import EVENTS_DEAD_LETTERED, EVENTS_LOADED

MARCH = DateRange.parse("2026-03-01", "2026-03-02")


def at(text: str) -> float:
    """Epoch seconds of a UTC 'YYYY-MM-DD HH:MM:SS'."""
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


def ev(user: int, event_type: str, when: str, film: int = 1, **fields: object) -> Event:
    return Event(new_event_id(), user, film, event_type, at(when), **fields)


@pytest.fixture
def conn(clickhouse_settings: Settings) -> Iterator[Client]:
    conn = client(clickhouse_settings)
    yield conn
    conn.disconnect()


def test_time_on_site_sums_sessions_per_user_and_day(conn: Client) -> None:
    session_a = [
        ev(1, "page_view", "2026-03-01 10:00:00", session_id="a"),
        ev(1, "click", "2026-03-01 10:05:00", session_id="a"),
    ]
    events = [
        *session_a,  # user 1, 03-01: 300 s
        ev(1, "page_view", "2026-03-01 12:00:00", session_id="b"),
        ev(1, "play", "2026-03-01 12:01:40", session_id="b"),  # + 100 s -> user 1 has 400 s on 03-01
        ev(2, "page_view", "2026-03-01 09:00:00", session_id="c"),  # one event: 0 s
        ev(2, "page_view", "2026-03-01 09:30:00"),  # no session: active, adds no time
        # user 1's session d crosses midnight: 540 s on 03-02 and 600 s on 03-03
        ev(1, "page_view", "2026-03-02 23:50:00", session_id="d"),
        ev(1, "progress", "2026-03-02 23:59:00", session_id="d"),
        ev(1, "progress", "2026-03-03 00:10:00", session_id="d"),
        ev(1, "progress", "2026-03-03 00:20:00", session_id="d"),
        ev(3, "page_view", "2026-03-02 08:00:00", session_id="e"),
        ev(3, "click", "2026-03-02 08:01:00", session_id="e"),  # user 3: 60 s on 03-02
    ]
    insert_events(conn, events)
    insert_events(conn, session_a)  # a re-delivered batch must not count twice

    result = api.time_on_site(conn, DateRange.parse("2026-03-01", "2026-03-04"))

    # 03-01: users 1, 2 -> (400 + 0) / 2 = 200; 03-02: users 1, 3 -> (540 + 60) / 2 = 300;
    # 03-03: user 1 -> 600; 03-04: nobody -> zeros.
    assert [(d["day"], d["active_users"], d["seconds"], d["avg_time_on_site_s"]) for d in result["days"]] == [
        ("2026-03-01", 2, 400, 200.0),
        ("2026-03-02", 2, 600, 300.0),
        ("2026-03-03", 1, 600, 600.0),
        ("2026-03-04", 0, 0, 0.0),
    ]
    # range: 5 active user-days, 400 + 600 + 600 = 1600 s -> 320 s; distinct users 1, 2, 3
    assert result["active_user_days"] == 5
    assert result["avg_time_on_site_s"] == 320.0
    assert result["active_users"] == 3


def test_retention_of_daily_cohorts(conn: Client) -> None:
    insert_events(
        conn,
        [
            # cohort 03-01: users 10, 11, 12
            ev(10, "page_view", "2026-03-01 10:00:00"),
            ev(10, "page_view", "2026-03-02 10:00:00"),  # D1
            ev(10, "page_view", "2026-03-08 10:00:00"),  # D7
            ev(10, "page_view", "2026-03-31 10:00:00"),  # D30; also the last day with data
            ev(11, "page_view", "2026-03-01 11:00:00"),
            ev(11, "page_view", "2026-03-02 23:59:59"),  # D1
            ev(12, "page_view", "2026-03-01 12:00:00"),  # never back
            # cohort 03-02: user 13, back on D7 only
            ev(13, "page_view", "2026-03-02 10:00:00"),
            ev(13, "page_view", "2026-03-09 10:00:00"),
            # first seen 02-20: active in the range but not a cohort of it
            ev(14, "page_view", "2026-02-20 10:00:00"),
            ev(14, "page_view", "2026-03-01 10:00:00"),
            ev(14, "page_view", "2026-03-02 10:00:00"),
        ],
    )

    result = api.retention(conn, MARCH)

    # 03-01 (3 users): D1 = 2/3 (10, 11), D7 = 1/3 (10), D30 = 1/3 (10; 03-31 is observed)
    # 03-02 (1 user): D1 = 0/1, D7 = 1/1, D30 = 04-01 after the last day 03-31 -> not observable (None)
    assert result["cohorts"] == [
        {"cohort": "2026-03-01", "size": 3,
         "d1": pytest.approx(2 / 3), "d7": pytest.approx(1 / 3), "d30": pytest.approx(1 / 3)},
        {"cohort": "2026-03-02", "size": 1, "d1": 0.0, "d7": 1.0, "d30": None},
    ]
    # D1: (2 + 0) / (3 + 1) = 0.5; D7: (1 + 1) / 4 = 0.5; D30: only cohort 03-01 is eligible: 1 / 3
    assert result["d1"] == {"retained": 2, "eligible": 4, "rate": 0.5}
    assert result["d7"] == {"retained": 2, "eligible": 4, "rate": 0.5}
    assert result["d30"] == {"retained": 1, "eligible": 3, "rate": pytest.approx(1 / 3)}


def test_retention_ignores_redeliveries_and_users_first_seen_after_the_range(conn: Client) -> None:
    cohort = [
        ev(20, "page_view", "2026-03-01 10:00:00"),
        ev(20, "page_view", "2026-03-02 10:00:00"),  # D1
        ev(21, "page_view", "2026-03-02 09:00:00"),  # cohort 03-02, never back
    ]
    insert_events(conn, [*cohort, ev(22, "page_view", "2026-03-03 10:00:00"), ev(20, "page_view", "2026-04-09 10:00:00")])
    insert_events(conn, cohort)  # a re-delivered batch: the same days, the same first day

    result = api.retention(conn, MARCH)

    # user 22 starts after the range (03-03); user 20's 04-09 event makes every day up to it observable
    assert [(c["cohort"], c["size"], c["d1"]) for c in result["cohorts"]] == [("2026-03-01", 1, 1.0), ("2026-03-02", 1, 0.0)]
    assert result["d1"] == {"retained": 1, "eligible": 2, "rate": 0.5}


def test_every_query_of_a_bounded_client_stops_at_the_deadline(conn: Client) -> None:
    bounded = api.Bounded(conn, timeout_s=1.0)
    with pytest.raises(api.ReportTimeout, match="max_execution_time"):
        # 20 rows at 0.5 s each: ClickHouse itself stops it after 1 s
        bounded.execute("SELECT sleepEachRow(0.5) FROM numbers(20) SETTINGS max_block_size = 1")
    with pytest.raises(api.ReportTimeout, match="before its next query"):
        bounded.execute("SELECT 1")  # the deadline has passed: not even sent
    cancelled = threading.Event()
    cancelled.set()
    with pytest.raises(api.ReportTimeout):
        api.Bounded(conn, timeout_s=60.0, cancelled=cancelled).execute("SELECT 1")
    assert api.Bounded(conn, timeout_s=60.0).execute("SELECT 1") == [(1,)]


def test_rating_completion_and_watched_share(conn: Client) -> None:
    insert_events(
        conn,
        [
            ev(1, "rate", "2026-03-01 10:00:00", film=1, rating=8.0),
            ev(2, "rate", "2026-03-01 11:00:00", film=1, rating=6.0),
            ev(1, "rate", "2026-03-02 10:00:00", film=2, rating=10.0),
            # viewing (1, 1): furthest 6010 s of 6000 -> capped at 1.0
            ev(1, "play", "2026-03-01 10:00:00", film=1, duration_seconds=6000.0),
            ev(1, "progress", "2026-03-01 10:50:00", film=1, watch_seconds=3000.0, duration_seconds=6000.0),
            ev(1, "complete", "2026-03-01 11:40:00", film=1, watch_seconds=6010.0, duration_seconds=6000.0),
            # viewing (2, 2): 1500 / 6000 = 0.25
            ev(2, "play", "2026-03-01 10:00:00", film=2, duration_seconds=6000.0),
            ev(2, "progress", "2026-03-01 10:25:00", film=2, watch_seconds=1500.0, duration_seconds=6000.0),
            # viewing (4, 4): played, never progressed: 0 / 3000 = 0.0
            ev(4, "play", "2026-03-01 10:00:00", film=4, duration_seconds=3000.0),
            # viewing (3, 3): no film length known -> not a viewing for the share, still a play
            ev(3, "play", "2026-03-01 10:00:00", film=3),
        ],
    )

    result = api.engagement(conn, MARCH)
    day1, day2 = result["days"]

    # 03-01: ratings 8, 6 -> 7.0; plays 4, completes 1 -> 0.25; shares 1.0, 0.25, 0.0 -> 1.25 / 3
    assert (day1["ratings"], day1["avg_rating"]) == (2, 7.0)
    assert (day1["plays"], day1["completes"], day1["completion_rate"]) == (4, 1, 0.25)
    assert day1["viewings"] == 3
    assert day1["avg_watch_ratio"] == pytest.approx(1.25 / 3)
    # 03-02: one rating of 10, nothing played: completion and share are 0, not an error
    assert (day2["ratings"], day2["avg_rating"], day2["plays"], day2["completion_rate"], day2["avg_watch_ratio"]) == (
        1, 10.0, 0, 0.0, 0.0,
    )
    # range: (8 + 6 + 10) / 3 = 8.0; 1 / 4 = 0.25; 1.25 / 3
    assert (result["ratings"], result["avg_rating"]) == (3, 8.0)
    assert result["completion_rate"] == 0.25
    assert result["avg_watch_ratio"] == pytest.approx(1.25 / 3)


def test_funnel_per_model_version_and_source(conn: Client) -> None:
    def shown(user: int, film: int, when: str, source: str, version: str) -> Event:
        return ev(user, "impression", when, film=film, source=source, model_version=version, position=film)

    def clicked(user: int, film: int, when: str, source: str, version: str) -> Event:
        return ev(user, "click", when, film=film, source=source, model_version=version)

    insert_events(
        conn,
        [
            # v1 on home_recs: 4 impressions, clicks on films 2 and 3
            *(shown(1, film, "2026-03-01 10:00:00", "home_recs", "v1") for film in (1, 2, 3, 4)),
            clicked(1, 2, "2026-03-01 10:01:00", "home_recs", "v1"),
            ev(1, "play", "2026-03-01 10:02:00", film=2),
            ev(1, "progress", "2026-03-01 10:30:00", film=2, watch_seconds=1200.0),
            ev(1, "complete", "2026-03-01 11:00:00", film=2, watch_seconds=5400.0),  # film 2: 5400 s
            ev(1, "progress", "2026-03-01 09:00:00", film=3, watch_seconds=4000.0),  # before the click: not credited
            clicked(1, 3, "2026-03-01 10:05:00", "home_recs", "v1"),
            ev(1, "progress", "2026-03-01 10:15:00", film=3, watch_seconds=600.0),  # film 3: 600 s
            # v2 on home_recs: 2 impressions, 1 click, never watched
            shown(2, 1, "2026-03-01 10:00:00", "home_recs", "v2"),
            shown(2, 5, "2026-03-01 10:00:00", "home_recs", "v2"),
            clicked(2, 5, "2026-03-01 10:01:00", "home_recs", "v2"),
            # trending (no model): 2 impressions, 1 click; the film is clicked again from search later,
            # the pair stays credited to its first click (trending)
            shown(3, 6, "2026-03-01 10:00:00", "trending", ""),
            shown(3, 7, "2026-03-01 10:00:00", "trending", ""),
            clicked(3, 6, "2026-03-01 10:01:00", "trending", ""),
            clicked(3, 6, "2026-03-01 10:10:00", "search", ""),
            ev(3, "progress", "2026-03-01 10:20:00", film=6, watch_seconds=2000.0),  # film 6: 2000 s
            # outside the range: ignored
            shown(1, 9, "2026-03-03 10:00:00", "home_recs", "v1"),
        ],
    )

    result = api.funnel(conn, MARCH)

    by_version = {row["model_version"]: row for row in result["by_model_version"]}
    # v1: 4 impressions, 2 clicks -> CTR 0.5; both clicked films watched: 5400 + 600 = 6000 s
    assert by_version["v1"] == {
        "model_version": "v1", "impressions": 4, "clicks": 2, "ctr": 0.5,
        "clicked": 2, "watched": 2, "watch_seconds": 6000.0,
    }
    # v2: 1 / 2 -> 0.5, clicked once, not watched
    assert by_version["v2"] == {
        "model_version": "v2", "impressions": 2, "clicks": 1, "ctr": 0.5,
        "clicked": 1, "watched": 0, "watch_seconds": 0.0,
    }
    # no model: trending 2 impressions, 1 attributed click (the search click had no search impression:
    # unattributed, not in CTR) -> 0.5; one (user, film) pair, credited once: 2000 s
    assert by_version[""] == {
        "model_version": "", "impressions": 2, "clicks": 1, "ctr": 0.5,
        "clicked": 1, "watched": 1, "watch_seconds": 2000.0,
    }
    by_source = {row["source"]: row for row in result["by_source"]}
    # home_recs: 6 impressions, 3 clicks -> 0.5; 6000 s; trending 1 / 2; search: no impression, so no attributed click
    home, search = by_source["home_recs"], by_source["search"]
    assert (home["impressions"], home["clicks"], home["ctr"]) == (6, 3, 0.5)
    assert home["watch_seconds"] == 6000.0
    assert (by_source["trending"]["ctr"], by_source["trending"]["watch_seconds"]) == (0.5, 2000.0)
    assert (search["impressions"], search["clicks"], search["ctr"], search["clicked"]) == (0, 0, 0.0, 0)
    # totals: 8 impressions; attributed clicks v1 2 + v2 1 + trending 1 = 4 -> 4 / 8 = 0.5;
    # clicked pairs (1,2) (1,3) (2,5) (3,6) = 4, of which 3 watched: 6000 + 2000 = 8000 s
    assert {k: result[k] for k in ("impressions", "clicks", "ctr", "clicked", "watched", "watch_seconds")} == {
        "impressions": 8, "clicks": 4, "ctr": 0.5, "clicked": 4, "watched": 3, "watch_seconds": 8000.0,
    }


def test_ingestion_lag_and_dead_letter_rate(conn: Client) -> None:
    rows = [  # ingested 2, 4 and 9 s after the event time
        ("e1", 1, 1, "page_view", datetime(2026, 3, 1, 10, 0, 0), datetime(2026, 3, 1, 10, 0, 2)),
        ("e2", 1, 1, "page_view", datetime(2026, 3, 1, 11, 0, 0), datetime(2026, 3, 1, 11, 0, 4)),
        ("e3", 2, 1, "page_view", datetime(2026, 3, 1, 12, 0, 0), datetime(2026, 3, 1, 12, 0, 9)),
    ]
    conn.execute("INSERT INTO interactions (event_id, user_id, film_id, event_type, ts, ingested_at) VALUES", rows)
    before = api.ingestion(conn, MARCH)["since_process_start"]
    EVENTS_LOADED.inc(6)
    EVENTS_DEAD_LETTERED.labels("test_reason").inc(2)

    result = api.ingestion(conn, MARCH)

    day1 = result["days"][0]
    # (2 + 4 + 9) / 3 = 5; the median of 2, 4, 9 is 4
    assert (day1["events"], day1["lag_avg_s"], day1["lag_p50_s"]) == (3, 5.0, 4.0)
    assert 4.0 <= day1["lag_p95_s"] <= 9.0
    assert result["days"][1]["events"] == 0
    process = result["since_process_start"]
    assert process["loaded"] - before["loaded"] == 6
    assert process["dead_lettered"] - before["dead_lettered"] == 2
    dead, loaded = process["dead_lettered"], process["loaded"]
    assert process["dlq_rate"] == pytest.approx(dead / (loaded + dead))
    assert process["dead_letters_by_reason"]["test_reason"] >= 2


def test_model_runs_with_their_offline_metrics(conn: Client) -> None:
    conn.execute(
        "INSERT INTO model_runs"
        " (version, started_at, finished_at, backend, status, published, metrics, baseline_metrics) VALUES",
        [
            ("20260301T0000", datetime(2026, 3, 1, 0, 0), datetime(2026, 3, 1, 0, 5), "implicit", "ok", 1,
             '{"ndcg@10": 0.21}', '{"ndcg@10": 0.12}'),
            ("20260225T0000", datetime(2026, 2, 25, 0, 0), datetime(2026, 2, 25, 0, 5), "implicit", "ok", 1,
             "{}", "{}"),
        ],
    )

    runs = api.model_runs(conn, MARCH)

    assert [run["version"] for run in runs] == ["20260301T0000"]  # the 02-25 run is outside the range
    assert runs[0]["metrics"] == {"ndcg@10": 0.21}
    assert runs[0]["baseline_metrics"] == {"ndcg@10": 0.12}
    assert runs[0]["published"] is True


def test_empty_range_gives_zeros(conn: Client) -> None:
    insert_events(conn, [ev(1, "impression", "2026-01-10 10:00:00", session_id="s", source="home_recs")])

    result = api.summary(conn, MARCH)

    assert result["time_on_site"] == {"active_users": 0, "active_user_days": 0, "avg_time_on_site_s": 0.0}
    assert result["retention"]["d1"] == {"retained": 0, "eligible": 0, "rate": 0.0}
    assert result["engagement"]["avg_rating"] == 0.0
    assert result["engagement"]["completion_rate"] == 0.0
    assert result["funnel"]["impressions"] == 0
    assert result["funnel"]["ctr"] == 0.0
    assert result["funnel"]["by_model_version"] == []


@pytest.mark.parametrize(
    ("first", "last", "message"),
    [
        (None, "2026-03-01", "'from' is required"),
        ("2026-03-01", "", "'to' is required"),
        ("03/01/2026", "2026-03-02", "'from' must be a date as YYYY-MM-DD"),
        ("2026-03-01", "2026-02-30", "'to' must be a date"),
        ("2026-03-02", "2026-03-01", "is after 'to'"),
        ("2025-01-01", "2026-03-01", "at most 366 days"),
        ("0086-02-25", "0086-02-25", "must be between 1970-01-02 and 2105-12-31"),  # found by schemathesis
    ],
)
def test_bad_ranges_are_refused_with_a_reason(first: str | None, last: str | None, message: str) -> None:
    with pytest.raises(InvalidRange, match=message):
        DateRange.parse(first, last)


def test_range_params_are_utc_midnights() -> None:
    params = DateRange.parse("2026-03-01", "2026-03-01").params()
    # one day: stop - start = 86400 s; 2026-03-01T00:00Z is 1772323200
    assert (params["start"], params["stop"]) == (1772323200, 1772323200 + 86400)
