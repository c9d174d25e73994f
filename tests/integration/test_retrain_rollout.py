"""The retrain's rollout step against real ClickHouse and Redis: under ROLLOUT=experiment a
version that passes the gate starts an experiment instead of replacing the served one, and
`cinerec train --model popular --force --no-switch` publishes the baseline as a version of its own."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from app.cli import main
from app.experiments import store
from app.experiments.model import State
from app.experiments.rollout import experiment_id
from app.recsys.training import pipeline, publish
from app.settings import Settings
from app.storage import redis_keys as keys
from app.storage import model_runs
from app.storage.clickhouse import client
from app.storage.redis_client import connect

pytestmark = [pytest.mark.integration, pytest.mark.redis_db(10)]


@pytest.fixture
def settings(seeded_process_settings: Settings) -> Settings:
    return seeded_process_settings


def test_under_rollout_experiment_a_new_version_challenges_the_served_one(settings: Settings) -> None:
    experimenting = settings.with_overrides(rollout="experiment", rollout_share=0.2)
    first = pipeline.retrain(experimenting)  # nothing served yet: switched to, as under ROLLOUT=switch
    second = pipeline.retrain(experimenting)
    conn, ch = connect(settings), client(settings)
    try:
        assert publish.current_version(conn) == first.version
        assert second.status == "published" and "rollout" in second.timings
        expected = experiment_id(second.version)
        assert second.reason.endswith(
            f"; experiment {expected} started: {second.version} on 20% of users against {first.version}")
        e = store.get(ch, expected)
        assert (e.state, e.control, e.challenger, e.share) == (State.RUNNING, first.version, second.version, 0.2)
        assert store.active(conn) == e  # serving follows it
        assert conn.ttl(keys.meta(second.version)) == -1 and conn.ttl(keys.meta(first.version)) == -1
        recorded = {run["version"]: run for run in model_runs.recent(settings)}
        assert recorded[second.version]["reason"] == second.reason
    finally:
        conn.close()
        ch.disconnect()


def test_train_publishes_popular_as_its_own_version_without_serving_it(settings: Settings) -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["train"]).exit_code == 0
    conn = connect(settings)
    try:
        served = publish.current_version(conn)
        done = runner.invoke(main, ["train", "--model", "popular", "--force", "--no-switch"])
        assert done.exit_code == 0, done.output
        [(version, _), _] = publish.published_versions(conn)
        assert publish.current_version(conn) == served
        assert f"{version}: PUBLISHED: forced: " in done.output
        assert f"published without switching (asked): serve it with `cinerec experiment start --challenger {version}`" \
            in done.output
        assert publish.read_meta(conn, version)["params"]["model"] == "popular"
        top, _ = keys.decode_ranked(conn.get(keys.popular(version)))
        user_list, _ = keys.decode_ranked(conn.get(keys.user_recs(version, 1)))
        assert user_list and set(user_list) <= set(top)  # Popular: the top films minus what the user has seen
        assert conn.get(keys.factors(version)) is None  # no factors: new users fall back to trending
    finally:
        conn.close()
    refused = runner.invoke(main, ["train", "--model", "popular"])  # Popular against itself cannot pass the gate
    assert refused.exit_code == 0 and ": REJECTED: " in refused.output, refused.output
