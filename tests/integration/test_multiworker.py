"""Two Faust workers in one consumer group on an 8-partition `interactions` topic.

Each worker is a `cinerec worker` subprocess (app.worker_process) with the
same app id, its own web port and its own datadir (derived from the port).
What must hold:
- the group shares the partitions: both workers own some, none owns one twice;
- stopping one worker while events are still arriving hands its partitions
  to the other, and every event is in ClickHouse exactly once (FINAL, by event_id);
- the user stats of the moved partitions are rebuilt in the survivor from
  the table changelogs: they equal the totals folded by hand (with and
  without standby replicas; the first worker keeps some partitions when the
  second joins, and recovers only what it lacks of those);
- the stats count every event exactly once, also the second half's events
  that were in flight when the worker stopped (re-read by the survivor: the
  source offsets in the stats records skip what was applied already).

Every check waits for the state it expects (polls with a generous deadline).
"""
from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from agents.folds import apply_user
from agents.views import user_partition
from app.events import Event
from app.localstack import proc
from app.storage.kafka_admin import group_caught_up
from app.worker_process import WorkerProcess
from tests.integration.ingest_support import make_events, messages_of, produce, stored_event_ids, wait_for_count

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.redis_db(7)]

PARTITIONS = 8
TOKEN = "multiworker-admin-token"  # the debug views are off by default and need the admin token
SETTLE_S = 180.0  # rebalances on a busy 2-core machine are slow; polls end as soon as the state is reached


@pytest.fixture(params=[0, 1], ids=["no-standby", "standby"])
def group_settings(request, clickhouse_settings, kafka_settings, redis_settings, tmp_path: Path):
    """Without standby replicas (the default: a worker that keeps a partition across the rebalance
    recovers only what it lacks, app/table_store.py) and with one (each worker replays the other's)."""
    return kafka_settings.with_overrides(
        table_standby_replicas=request.param,
        clickhouse_url=clickhouse_settings.clickhouse_url, redis_url=redis_settings.redis_url,
        topic_partitions=PARTITIONS, local_dir=tmp_path, loader_batch_within_s=0.2, loader_batch_max=100,
        debug_views=True, admin_token=TOKEN,
    )


def _get(worker: WorkerProcess, path: str) -> tuple[int, dict]:
    request = urllib.request.Request(f"{worker.settings.web_url}{path}", headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _actives(worker: WorkerProcess) -> set[int]:
    return set(_get(worker, "/debug/partitions/")[1]["actives"])


def _shared(a: WorkerProcess, b: WorkerProcess) -> bool:
    mine, theirs = _actives(a), _actives(b)
    return bool(mine) and bool(theirs) and not mine & theirs and mine | theirs == set(range(PARTITIONS))


def _fold(events: list[Event]) -> dict[int, dict]:
    """Per-user stats the stats agent must hold for these events (send order per user)."""
    state: dict[int, dict] = {}
    for event in events:
        state[event.user_id] = apply_user(state.get(event.user_id), event)
    return state


def _held_stats(workers: list[WorkerProcess], users: list[int]) -> dict[int, dict]:
    """Stats of `users` as the worker actively owning each one's partition holds them
    (without the fold's bookkeeping: source marks, write time)."""
    out = {}
    for worker in workers:
        for user in users:
            status, body = _get(worker, f"/debug/user-stats/{user}/")
            if status == 200 and body["active"]:
                out[user] = {k: v for k, v in body["stats"].items() if k not in ("src", "at")}
    return out


def _stats_gap(held: dict[int, dict], expected: dict[int, dict]) -> dict[int, str]:
    """The users whose held stats differ from the expected ones, with their source partition
    and event counts: which partition's batches never reached (or reached twice) the fold."""
    return {user: f"p{user_partition(user, PARTITIONS)}: {held.get(user, {}).get('events')}/{want['events']}"
            for user, want in sorted(expected.items()) if held.get(user) != want}


def test_two_workers_share_partitions_and_one_takes_over(group_settings, tmp_path: Path) -> None:
    first = make_events(300, seed=11)  # users 1..40
    second = [e._replace(user_id=e.user_id + 1000) for e in make_events(300, seed=12)]  # other users
    expected = _fold(first)
    expected_all = _fold(first + second)

    a = WorkerProcess(group_settings, tmp_path / "worker-a.log").start(timeout=SETTLE_S)
    b = WorkerProcess(group_settings, tmp_path / "worker-b.log")
    try:
        b.start(timeout=SETTLE_S)
        both = lambda: a.alive() and b.alive()  # noqa: E731
        assert proc.wait_for(lambda: _shared(a, b), SETTLE_S, alive=both), \
            f"partitions not shared: a={_actives(a)} b={_actives(b)}"

        asyncio.run(produce(group_settings, messages_of(first)))
        assert wait_for_count(group_settings, len(first), timeout=SETTLE_S, alive=both) == len(first)
        users = sorted(expected)
        assert proc.wait_for(lambda: _held_stats([a, b], users) == expected, SETTLE_S, alive=both), \
            "the group's stats never matched the events of the first half"
        moved = _actives(a)
        moved_users = sorted(u for u in expected if user_partition(u, PARTITIONS) in moved)
        assert moved_users, "no user of the first half hashed to worker a's partitions"

        # Mid-stream: half of the second batch is in Kafka (maybe in a's hands) when a stops.
        asyncio.run(produce(group_settings, messages_of(second[:150])))
        a.stop()
        asyncio.run(produce(group_settings, messages_of(second[150:])))

        assert proc.wait_for(lambda: _actives(b) == set(range(PARTITIONS)), SETTLE_S, alive=b.alive), \
            f"b did not take over a's partitions: b={_actives(b)}"
        loaded = wait_for_count(group_settings, len(first) + len(second), timeout=SETTLE_S, alive=b.alive)
        assert loaded == len(first) + len(second), f"ClickHouse holds {loaded} of {len(first) + len(second)} events"
        assert proc.wait_for(lambda: asyncio.run(group_caught_up(group_settings)), SETTLE_S, alive=b.alive), \
            "b never committed the end of interactions (loader group) or of the stats batch topics (Faust group)"
        everyone = sorted(expected_all)
        proc.wait_for(lambda: _held_stats([b], everyone) == expected_all, SETTLE_S, alive=b.alive)
        recovered = _held_stats([b], everyone)
    finally:
        b.stop()
        a.stop()

    assert sorted(stored_event_ids(group_settings)) == sorted(e.event_id for e in first + second)
    assert {u: recovered.get(u) for u in moved_users} == {u: expected[u] for u in moved_users}  # from changelogs
    assert recovered == expected_all, (  # every event once, also those in flight at the stop
        "every stats batch was committed, but these users' stats in b miss or double events "
        f"(user: partition, events held/expected): {_stats_gap(recovered, expected_all)}")
