"""`cinerec experiment start|status|stop|report` against the real ClickHouse and Redis,
on the hand-made events of tests/app/experiments/test_analysis.py (figures worked out there)."""
from __future__ import annotations

import json
import re
from typing import Iterator

import pytest
import redis
from click.testing import CliRunner, Result

from app.cli import main
from app.experiments import store
from app.settings import Settings, get_settings
from app.storage import redis_keys as keys
from app.storage.clickhouse import client
from app.storage.interactions import insert_events
from tests.app.experiments.test_analysis import hand_made_events

pytestmark = [pytest.mark.integration, pytest.mark.redis_db(3)]


@pytest.fixture
def services(clickhouse_settings: Settings, redis_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[redis.Redis]:
    """The CLI's settings on a test database holding the hand-made events, and a Redis db
    where v1 (served) and v2 are published."""
    conn = client(clickhouse_settings)
    insert_events(conn, hand_made_events())
    conn.disconnect()
    r = redis.Redis.from_url(redis_settings.redis_url, socket_timeout=5)
    for version in ("v1", "v2"):
        r.zadd(keys.VERSIONS, {version: 1.0})
        r.set(keys.meta(version), json.dumps({"version": version}))
    r.set(keys.CURRENT, "v1")
    monkeypatch.setenv("CLICKHOUSE_URL", clickhouse_settings.clickhouse_url)
    monkeypatch.setenv("REDIS_URL", redis_settings.redis_url)
    get_settings.cache_clear()
    yield r
    get_settings.cache_clear()
    r.close()


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, ["experiment", *args])


def start_hand(*extra: str) -> Result:
    # window Mar 1 .. Mar 10 (the maximum duration ends it); control defaults to the served v1
    return cli("start", "--challenger", "v2", "--share", "0.5", "--id", "exp-hand", "--at", "2026-03-01T00:00:00Z",
               "--max-days", "9", *extra)


def test_start_status_report_stop(services: redis.Redis) -> None:
    started = start_hand("--min-users", "1")
    assert started.exit_code == 0, started.output
    assert "experiment exp-hand running: v1 (control) vs v2 (challenger, 50% of users)" in started.output
    assert json.loads(services.get(keys.EXPERIMENT_ACTIVE))["id"] == "exp-hand"

    status = cli("status")
    assert status.exit_code == 0, status.output
    assert re.search(r"exp-hand\s+running\s+v1\s+v2\s+50%", status.output) and "serving: exp-hand" in status.output

    text = cli("report", "exp-hand", "--replicates", "200")
    assert text.exit_code == 0, text.output
    rows = {cells[0]: cells[1:] for cells in (re.split(r"\s{2,}", line.rstrip()) for line in text.output.splitlines()) if cells[0]}
    assert rows["users"] == ["2", "2"]
    assert rows["unattributed clicks"] == ["1", "0"]
    # (6000/9 + 1800/5) / 2 = 513.3 s = 8.6 min; (9000/7 + 0) / 2 = 642.9 s = 10.7 min; +25.2 %
    assert rows["watch time per user-day *"][:3] == ["8.6 min", "10.7 min", rows["watch time per user-day *"][2]]
    assert rows["watch time per user-day *"][2].startswith("+25.2% [")
    assert rows["D7 retention"][:2] == ["0.0%", "-"]  # no challenger user is eligible for D7
    assert re.search(r"^verdict: (challenger wins|control wins|no difference yet \(\d+ more users per arm needed "
                     r"for the planned effect\)|invalid \(sample ratio mismatch\))$", text.output, re.M)

    figures = json.loads(cli("report", "exp-hand", "--json", "--replicates", "100").output)
    assert figures["arms"]["challenger"]["metrics"]["avg_rating"] == 10.0

    stopped = cli("stop", "exp-hand", "--reason", "enough")
    assert stopped.exit_code == 0, stopped.output
    assert "experiment exp-hand stopped: stop: enough" in stopped.output
    assert services.get(keys.EXPERIMENT_ACTIVE) is None
    log = cli("status", "exp-hand")
    assert re.search(r"start\n.*stop: enough", log.output)
    conn = client(get_settings())
    [_, stop_decision] = store.decisions(conn, "exp-hand")
    conn.disconnect()
    assert stop_decision.figures["arms"]["control"]["users"] == 2  # the report it was stopped on


def test_start_plans_the_sample_from_recent_traffic(services: redis.Redis) -> None:
    # planned at Mar 10 over the 14 days before: the four exposed users give the primary metric's variance
    done = cli("start", "--challenger", "v2", "--share", "0.5", "--id", "exp-plan", "--at", "2026-03-10T00:00:00Z")
    assert done.exit_code == 0, done.output
    planned = re.search(r"plan: watch_time_per_user_day = [\d.]+ .*4 users in the last 14 days\): (\d+) users", done.output)
    assert planned, done.output
    conn = client(get_settings())
    assert store.get(conn, "exp-plan").min_users_per_arm == int(planned.group(1))
    conn.disconnect()


def test_without_traffic_the_default_sample_is_used(services: redis.Redis) -> None:
    done = cli("start", "--challenger", "v2", "--id", "exp-empty", "--at", "2020-01-01T00:00:00Z")
    assert done.exit_code == 0, done.output
    assert "too little traffic in the last 14 days" in done.output


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["start", "--challenger", "v9", "--min-users", "5"], 1, "version 'v9' is not published"),
        (["start", "--challenger", "v2", "--guardrail", "ctr=2"], 2, "tolerance must be in [0, 1)"),
        (["start", "--challenger", "v2", "--primary", "joy"], 2, "unknown metric 'joy'"),
        (["start", "--challenger", "v2", "--at", "yesterday"], 2, "not an ISO time"),
        (["report", "nope"], 1, "no experiment 'nope'"),
        (["stop", "nope"], 1, "no experiment 'nope'"),
    ],
)
def test_bad_requests_say_why(services: redis.Redis, args: list[str], code: int, message: str) -> None:
    result = cli(*args)
    assert result.exit_code == code, result.output
    assert message in result.output


def test_one_experiment_at_a_time(services: redis.Redis) -> None:
    assert start_hand("--min-users", "1").exit_code == 0
    again = cli("start", "--challenger", "v2", "--id", "exp-two", "--min-users", "1")
    assert again.exit_code == 1 and "'exp-hand' is running; stop it first" in again.output
