"""The retrain pipeline end to end against real ClickHouse and Redis (app/recsys/training/pipeline.py),
and what the web serves after it."""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import AsyncIterator

import numpy as np
import pytest
import redis
from aiohttp.test_utils import TestClient

from app.recsys.data.synthetic import PlantedTaste, seed
from app.recsys.evaluation.gate import GatePolicy
from app.recsys.models.foldin import unpack_factors
from app.recsys.training import pipeline, publish
from app.settings import Settings
from app.storage import redis_keys as keys
from app.storage import model_runs
from app.storage.clickhouse import client
from app.storage.locks import retrain_lock
from app.storage.redis_client import connect
from tests.integration.web_support import running_client

pytestmark = pytest.mark.redis_db(10)

SPEC = PlantedTaste(users=300, films=200, events=15_000)


@pytest.fixture
def settings(clickhouse_settings: Settings, redis_settings: Settings, tmp_path: Path) -> Settings:
    """Test ClickHouse database with planted-taste events + flushed Redis db + temp model dir; a few
    tuning trials keep these pipeline tests quick (the tuning's own: tests/integration/test_retrain_tuning.py)."""
    seed(clickhouse_settings, SPEC)
    return clickhouse_settings.with_overrides(redis_url=redis_settings.redis_url, model_dir=tmp_path / "models",
                                              tune_trials=4)


@pytest.fixture
def conn(settings: Settings) -> redis.Redis:
    client_ = connect(settings)
    yield client_
    client_.close()


def recorded(settings: Settings) -> dict[str, dict]:
    return {run["version"]: run for run in model_runs.recent(settings)}


def test_retrain_publishes_an_als_model_that_beats_popular(settings: Settings, conn: redis.Redis) -> None:
    report = pipeline.retrain(settings)

    assert report.status == "published" and report.published, report.reason
    assert report.metrics["ndcg@10"] > report.baseline_metrics["ndcg@10"]
    assert (report.n_users, report.n_items, report.n_interactions) == (SPEC.users, SPEC.films, SPEC.events)
    assert {"load", "split", "evaluate", "fit", "save", "publish"} <= set(report.timings)

    version = report.version
    assert publish.current_version(conn) == version
    meta = publish.read_meta(conn, version)
    assert meta["metrics"]["ndcg@10"] == pytest.approx(report.metrics["ndcg@10"])
    films, scores = keys.decode_ranked(conn.get(keys.user_recs(version, 1)))
    assert len(films) == 100 and scores == sorted(scores, reverse=True)
    assert set(films) <= set(range(1, SPEC.films + 1))
    similar, _ = keys.decode_ranked(conn.get(keys.similar(version, 5)))
    assert len(similar) == 20 and 5 not in similar
    assert len(keys.decode_ranked(conn.get(keys.popular(version)))[0]) == 100
    assert len(unpack_factors(conn.get(keys.factors(version))).items) == SPEC.films
    assert conn.hget(keys.FILM_TITLES, "7") == b"Film 7"
    assert (settings.model_dir / version / "meta.json").is_file()

    run = recorded(settings)[version]
    assert (run["status"], run["published"], run["n_users"]) == ("published", 1, SPEC.users)
    assert json.loads(run["metrics"])["ndcg@10"] == pytest.approx(report.metrics["ndcg@10"])
    assert json.loads(run["baseline_metrics"])["ndcg@10"] == pytest.approx(report.baseline_metrics["ndcg@10"])


def test_the_gate_records_its_interval_and_the_lists_are_published(settings: Settings, conn: redis.Redis) -> None:
    report = pipeline.retrain(settings)
    diff = report.vs_popular
    assert (report.verdict, report.published) == ("pass", True)
    assert 0 < diff.low <= diff.mean <= diff.high, diff  # planted taste: ALS clearly beats Popular
    assert diff.mean == pytest.approx(report.metrics["ndcg@10"] - report.baseline_metrics["ndcg@10"])
    assert diff.users == report.metrics["users"] and report.vs_served is None
    # 300 users, fewer than GATE_MIN_USERS (500): the holdout grew until it held 20% of the events
    assert (report.holdout.rule, report.holdout.share >= 0.2) == ("max_share", True)
    run = recorded(settings)[report.version]
    assert (run["verdict"], run["holdout_rule"], run["holdout_users"]) == ("pass", "max_share", report.holdout.users)
    assert (run["vs_popular_mean"], run["vs_popular_low"], run["vs_popular_high"]) == pytest.approx(
        (diff.mean, diff.low, diff.high))
    assert (run["vs_served_mean"], run["served_version"]) == (None, "")
    assert len(keys.decode_ranked(conn.get(keys.POPULAR_LATEST))[0]) == 100
    assert len(keys.decode_ranked(conn.get(keys.TRENDING_LATEST))[0]) == 100

    # the next run meets a served model: its recorded spec is refitted on the same holdout
    weaker = pipeline.retrain(settings, pipeline.RetrainConfig(als={"factors": 1, "iterations": 1}, tune=False))
    vs_served = weaker.vs_served
    assert vs_served is not None and vs_served.users == weaker.vs_popular.users
    assert vs_served.low <= vs_served.mean <= vs_served.high and vs_served.mean < 0  # 1 factor fits worse
    run = recorded(settings)[weaker.version]
    assert (run["served_version"], run["vs_served_low"]) == (report.version, pytest.approx(vs_served.low))


def test_the_holdout_grows_until_it_holds_the_minimum_users(settings: Settings) -> None:
    report = pipeline.retrain(settings.with_overrides(gate_min_users=50))
    assert (report.holdout.rule, report.holdout.users >= 50, report.holdout.share < 0.2) == ("min_users", True, True)
    assert report.metrics["users"] <= report.holdout.users  # films new to the catalog cannot be evaluated


def test_a_published_run_prunes_model_folders_redis_no_longer_keeps(settings: Settings) -> None:
    stale = settings.model_dir / "20250101T000000Z-abcdef"  # e.g. a publish that failed midway
    stale.mkdir(parents=True)
    first = pipeline.retrain(settings).version
    second = pipeline.retrain(settings, pipeline.RetrainConfig(force=True)).version
    assert sorted(p.name for p in settings.model_dir.iterdir()) == sorted([first, second])


def test_recommendations_leave_out_films_the_user_already_has(settings: Settings, conn: redis.Redis) -> None:
    version = pipeline.retrain(settings).version
    ch = client(settings)
    try:
        (watched,), = ch.execute(
            f"SELECT groupUniqArray(film_id) FROM {settings.clickhouse_database}.interactions WHERE user_id = 1")
    finally:
        ch.disconnect()
    recommended, _ = keys.decode_ranked(conn.get(keys.user_recs(version, 1)))
    assert watched and not set(recommended) & set(watched)


def test_pointer_switch_is_atomic_for_a_concurrent_reader(settings: Settings, conn: redis.Redis) -> None:
    first = pipeline.retrain(settings).version
    stop = threading.Event()
    reads: list[tuple[str, bool]] = []

    def reader() -> None:
        rng = np.random.default_rng(0)
        local = connect(settings)
        while not stop.is_set():
            version = publish.current_version(local)
            user = int(rng.integers(1, SPEC.users + 1))
            reads.append((version, bool(local.exists(keys.user_recs(version, user)))))
        local.close()

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        second = pipeline.retrain(settings, pipeline.RetrainConfig(force=True)).version
        while not any(v == second for v, _ in reads[-50:]):  # until the reader has seen the switch
            stop.wait(0.01)
    finally:
        stop.set()
        thread.join(timeout=10)
    versions = {v for v, _ in reads}
    assert versions == {first, second}
    assert all(exists for _, exists in reads), "a reader saw a current version without the user's list"


def test_a_second_concurrent_retrain_is_refused_by_the_lock(settings: Settings, conn: redis.Redis) -> None:
    loading = threading.Event()
    release = threading.Event()
    outcome: dict[str, object] = {}

    def slow_progress(stage: str, done: int, total: int | None) -> None:
        if stage == "load" and not loading.is_set():
            loading.set()
            release.wait(timeout=60)  # hold the first run inside the lock

    def first_run() -> None:
        with retrain_lock(settings) as acquired:
            outcome["first_acquired"] = acquired
            outcome["report"] = pipeline.retrain(settings, progress=slow_progress)

    thread = threading.Thread(target=first_run)
    thread.start()
    try:
        assert loading.wait(timeout=60), "the first retrain never started loading"
        with retrain_lock(settings) as second_acquired:
            assert conn.exists(keys.RETRAIN_LOCK)
    finally:
        release.set()
        thread.join(timeout=120)
    assert outcome["first_acquired"] is True
    assert second_acquired is False
    assert outcome["report"].published
    with retrain_lock(settings) as acquired_after:
        assert acquired_after, "the lock must be released when a run ends"


def test_a_rejected_model_keeps_the_served_version(settings: Settings, conn: redis.Redis) -> None:
    served = pipeline.retrain(settings).version
    rejected = pipeline.retrain(settings, pipeline.RetrainConfig(gate=GatePolicy(min_lift=1000.0)))

    assert (rejected.status, rejected.published, rejected.verdict) == ("rejected", False, "fail")
    assert "ALS vs Popular + 100000%" in rejected.reason and rejected.reason.endswith(": worse")
    assert publish.current_version(conn) == served
    assert not list(conn.scan_iter(match=keys.version_pattern(rejected.version)))
    assert not (settings.model_dir / rejected.version).exists()
    run = recorded(settings)[rejected.version]
    assert (run["status"], run["published"], run["verdict"]) == ("rejected", 0, "fail")
    assert run["reason"] == rejected.reason


def test_a_failing_run_is_recorded_and_keeps_the_served_version(settings: Settings, conn: redis.Redis) -> None:
    served = pipeline.retrain(settings).version
    broken = pipeline.RetrainConfig(als={"factors": 8, "no_such_param": 1}, tune=False)
    with pytest.raises(TypeError):
        pipeline.retrain(settings, broken, version="20260101T000000Z-badbad")
    assert publish.current_version(conn) == served
    run = recorded(settings)["20260101T000000Z-badbad"]
    assert run["status"] == "failed" and "no_such_param" in run["reason"]


def test_rollback_serves_the_previous_version_again(settings: Settings, conn: redis.Redis) -> None:
    first = pipeline.retrain(settings).version
    second = pipeline.retrain(settings, pipeline.RetrainConfig(force=True)).version
    assert publish.current_version(conn) == second
    publish.rollback(conn, first)
    assert publish.current_version(conn) == first
    assert conn.exists(keys.user_recs(first, 1)) and conn.exists(keys.factors(first))


def test_history_shorter_than_the_holdout_is_rejected(clickhouse_settings: Settings, redis_settings: Settings,
                                                     tmp_path: Path) -> None:
    seed(clickhouse_settings, PlantedTaste(users=50, films=20, events=1_000, days=5))
    settings = clickhouse_settings.with_overrides(redis_url=redis_settings.redis_url, model_dir=tmp_path)
    report = pipeline.retrain(settings, pipeline.RetrainConfig(holdout_days=7, force=True))
    assert (report.status, report.published) == ("rejected", False)
    assert "no events before the holdout" in report.reason
    assert recorded(settings)[report.version]["status"] == "rejected"


def test_a_publish_failing_before_the_switch_leaves_no_keys_behind(
    settings: Settings, conn: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = pipeline.retrain(settings).version

    def switch_fails(*args: object, **kwargs: object) -> None:
        raise redis.ConnectionError("connection lost before the switch")

    monkeypatch.setattr(publish, "activate", switch_fails)
    with pytest.raises(redis.ConnectionError):
        pipeline.retrain(settings, pipeline.RetrainConfig(force=True), version="20260101T000000Z-0ff0ff")
    assert publish.current_version(conn) == served
    assert not list(conn.scan_iter(match=keys.version_pattern("20260101T000000Z-0ff0ff")))
    assert recorded(settings)["20260101T000000Z-0ff0ff"]["status"] == "failed"


def test_an_overlapping_run_never_prunes_the_folder_of_a_run_in_progress(settings: Settings,
                                                                         conn: redis.Redis) -> None:
    """Two runs at once (the first lost its lock, e.g. Redis was unreachable for a whole TTL)."""
    first = "20260101T000000Z-f1f1f1"
    publishing, resume = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}

    def pause_while_publishing(stage: str, done: int, total: int | None) -> None:
        if stage == "publish users" and not publishing.is_set():
            publishing.set()
            resume.wait(timeout=120)  # saved, not published yet: the folder is in nobody's registry

    def first_run() -> None:
        outcome["report"] = pipeline.retrain(settings, progress=pause_while_publishing, version=first)

    thread = threading.Thread(target=first_run)
    thread.start()
    try:
        assert publishing.wait(timeout=120), "the first run never reached its publish"
        second = pipeline.retrain(settings, pipeline.RetrainConfig(force=True))
        assert second.published  # and it pruned after publishing
        assert (settings.model_dir / first / "meta.json").is_file(), "the second run deleted the first's model"
    finally:
        resume.set()
        thread.join(timeout=120)
    assert outcome["report"].published
    assert publish.current_version(conn) == first
    assert sorted(p.name for p in settings.model_dir.iterdir()) == sorted([first, second.version])


@pytest.fixture
async def rejected_first_run(settings: Settings) -> AsyncIterator[TestClient]:
    """From an empty Redis, a first run whose model the gate rejects; then the web app starts."""
    conn = connect(settings)
    try:
        assert conn.dbsize() == 0
        report = pipeline.retrain(settings, pipeline.RetrainConfig(gate=GatePolicy(min_lift=1000.0)))
        assert (report.status, report.verdict) == ("rejected", "fail"), report.reason
        assert publish.current_version(conn) is None
        assert not conn.exists(keys.TRENDING)  # no stats agent ran: the live trending list is empty too
    finally:
        conn.close()
    async for web in running_client(settings):
        yield web


def stored_users(settings: Settings) -> list[int]:
    conn = client(settings)
    try:
        return [user for user, in conn.execute(
            f"SELECT DISTINCT user_id FROM {settings.clickhouse_database}.interactions ORDER BY user_id")]
    finally:
        conn.disconnect()


async def test_no_user_gets_an_empty_list_after_a_rejected_first_run(rejected_first_run: TestClient,
                                                                     settings: Settings) -> None:
    users = stored_users(settings)
    assert len(users) == SPEC.users
    for user in [*users, max(users) + 1]:  # every stored user, and one the store has never seen
        response = await rejected_first_run.get(f"/v1/users/{user}/recommendations?limit=10")
        body = await response.json()
        assert response.status == 200, body
        assert len(body["items"]) == 10, (user, body)
        assert body["source"] in ("trending", "popular") and body["model_version"] is None

    for source in ("popular", "trending"):
        response = await rejected_first_run.get(f"/v1/films/{source}?limit=20")
        body = await response.json()
        assert response.status == 200 and len(body["items"]) == 20, body
        assert all(item["title"] == f"Film {item['film_id']}" for item in body["items"])
