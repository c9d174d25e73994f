"""The two-level model on the real services: features never read the future (ClickHouse), the gate's
choice between the two-level and the single model (ClickHouse + Redis, recorded in model_runs), and
request-time ranking from what a version publishes and the stats agent mirrors (Redis)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import redis

from agents.live import LiveMirror
from app.events import Event, new_event_id
from app.recsys.data.dataset import DAY_S, EventWeights, build_dataset
from app.recsys.data.load import load_films, load_interactions
from app.recsys.models.als import ALSRecommender
from app.recsys.ranking.online import RequestRanker
from app.recsys.ranking.twolevel import REQUEST_FILE, LevelOne, TwoLevelConfig
from app.recsys.training import pipeline, publish
from app.settings import Settings
from app.storage import model_runs
from app.storage import redis_keys as keys
from app.storage.clickhouse import client
from app.storage.interactions import insert_events
from app.storage.redis_client import connect
from tests.integration.ranking_support import END_TS, seed_drift

pytestmark = pytest.mark.redis_db(14)


@pytest.fixture
def settings(clickhouse_settings: Settings, redis_settings: Settings, tmp_path: Path) -> Settings:
    seed_drift(clickhouse_settings)
    return clickhouse_settings.with_overrides(redis_url=redis_settings.redis_url, model_dir=tmp_path / "models")


def test_features_as_of_t_never_read_an_event_after_t(settings: Settings) -> None:
    """Extreme events after T (a cold film played by everyone, 1-star floods, a user's burst)
    are loaded with the rest; every feature of every candidate as of T stays the same."""
    as_of = float(END_TS - 10 * DAY_S)
    weights = EventWeights()

    def features_as_of_t() -> tuple[np.ndarray, np.ndarray]:
        events = load_interactions(settings)  # everything in ClickHouse, the future included
        before, _ = events.split_by_time(as_of)
        dataset = build_dataset(before, weights)
        als = ALSRecommender(factors=8, iterations=5).fit(dataset)
        first = LevelOne.build(dataset, events, as_of, {"als": als},
                                 load_films(settings).genre_matrix(dataset.items)[0], TwoLevelConfig())
        candidates, features = first.features(np.arange(len(dataset.users)), 20)
        return np.column_stack([candidates.rows, candidates.items]), features

    pairs, features = features_as_of_t()
    later = [Event(new_event_id(), user, film, kind, as_of + offset, rating=rating, duration_seconds=5400.0,
                   watch_seconds=5400.0)
             for user in range(1, 601) for film, kind, rating, offset in
             ((1, "play", 0.0, 0), (1, "complete", 0.0, 1), (2, "rate", 1.0, 3600), (3, "play", 0.0, 9 * DAY_S))]
    conn = client(settings)
    try:
        insert_events(conn, later)
    finally:
        conn.disconnect()
    pairs_after, features_after = features_as_of_t()
    np.testing.assert_array_equal(pairs_after, pairs)
    np.testing.assert_array_equal(features_after, features)  # NaN == NaN here: exactly the same matrix
    assert len(load_interactions(settings)) > len(later)  # the future was there to be read


def recorded(settings: Settings, version: str) -> dict:
    return {run["version"]: run for run in model_runs.recent(settings)}[version]


def test_the_two_level_model_ships_when_it_wins_and_the_single_model_when_not(settings: Settings) -> None:
    won = pipeline.retrain(settings)
    assert (won.status, won.shipped) == ("published", "two-level"), won.reason
    assert won.vs_single.low > 0 and won.vs_single.users == won.vs_popular.users
    two, als = won.models["two-level"], won.models["als"]
    assert won.vs_single.mean == pytest.approx(two["ndcg@10"] - als["ndcg@10"])
    assert won.metrics["ndcg@10"] == pytest.approx(two["ndcg@10"]) and two["label_split"]["users"] >= 100
    assert two["sources"] == ["als", "item_knn", "popular", "trending", "recent"]  # item-kNN: offline and online
    assert set(two["recall@100"]) == {"als", "item_knn", "popular", "trending", "recent", "union"}
    run = recorded(settings, won.version)
    assert (run["shipped"], run["vs_single_low"]) == ("two-level", pytest.approx(won.vs_single.low))
    assert json.loads(run["models"])["two-level"]["ranker"]["trees"] >= 1
    conn = connect(settings)
    try:
        meta = publish.read_meta(conn, won.version)
        assert (meta["shipped"], meta["params"]["model"]) == ("two-level", "two-level")
        bundle = conn.get(keys.ranking(won.version))
        films, scores = keys.decode_ranked(conn.get(keys.user_recs(won.version, 1)))
    finally:
        conn.close()
    assert bundle == (settings.model_dir / won.version / REQUEST_FILE).read_bytes()
    assert list(RequestRanker.unpack(bundle).item_item) == ["item_knn"]
    assert len(films) >= 10 and scores == sorted(scores, reverse=True)

    # a ranker taught on 2 users cannot beat ALS: the single model ships, judged against the served
    # two-level model by this run's two-level model
    lost = pipeline.retrain(settings, pipeline.RetrainConfig(two_level=TwoLevelConfig(max_train_users=2)))
    assert (lost.status, lost.shipped) == ("published", "als"), lost.reason
    assert lost.vs_single.low <= 0 and "not shown better, the single model ships" in lost.reason
    assert lost.vs_served.mean == pytest.approx(-lost.vs_single.mean)
    run = recorded(settings, lost.version)
    assert (run["shipped"], run["vs_single_high"]) == ("als", pytest.approx(lost.vs_single.high))
    conn = connect(settings)
    try:
        assert conn.get(keys.ranking(lost.version)) is None
        assert publish.read_meta(conn, lost.version)["params"]["model"] == "als"
    finally:
        conn.close()


async def test_request_time_ranking_from_the_published_bundle_and_the_live_mirror(settings: Settings) -> None:
    version = pipeline.retrain(settings).version
    newcomer, recent = 9_000_001, [12, 4, 20]  # films of group 3 (film f is of group (f - 1) % 8)
    mirror = LiveMirror(settings)
    mirror.set_recent(newcomer, recent, {"events": 5, "ratings": 0, "rating_milli": 0, "last_seen": END_TS})
    await mirror.flush()
    await mirror.redis.aclose()
    conn = redis.Redis.from_url(settings.redis_url, socket_timeout=5)
    try:
        request = RequestRanker.unpack(conn.get(keys.ranking(version)))
        live = [int(f) for f in conn.lrange(keys.recent(newcomer), 0, -1)]
        record = keys.decode_live_user(conn.get(keys.live_user(newcomer)))
    finally:
        conn.close()
    assert (live, record["events"]) == (recent, 5)
    got = request.rank(live, record, END_TS + 3600, 10, explain=True)
    same = RequestRanker.unpack((settings.model_dir / version / REQUEST_FILE).read_bytes()).rank(
        recent, {"events": 5, "ratings": 0, "rating_sum": 0.0, "last_seen": END_TS}, END_TS + 3600, 10, explain=True)
    assert got == same  # what Redis serves is what the run saved
    assert len(got.film_ids) == 10 and not set(got.film_ids) & set(recent)
    # in this world group 3 goes with group 7 (viewers move from one to the other): the newcomer's pair
    assert np.mean([(f - 1) % 8 in (3, 7) for f in got.film_ids]) >= 0.8
    assert all(reasons for reasons in got.reasons)
