"""Stats: pure folds against hand-computed values, and the agents via test_context()."""
from __future__ import annotations

import pytest

from app.events import Event
from app.storage import redis_keys
from agents import batches, live, stats
from tables.stats import TRENDING_EXPIRES, TRENDING_STEP, TRENDING_WINDOW, film_plays_window, film_stats, film_viewers, user_stats

T0 = 1_700_000_000.0


def ev(i: int, user: int, film: int, kind: str, ts: float, watch: float = 0.0, rating: float = 0.0) -> Event:
    return Event(f"e{i}", user, film, kind, ts, watch_seconds=watch, duration_seconds=100.0, rating=rating)


# user 7: plays film 1 to 60 s, switches to film 2 (play, 30 s, complete at 90 s), rates film 2 an 8,
# comes back to film 1 (progress to 80 s without a new play) and rates film 1 a 5.
USER_EVENTS = [
    ev(1, 7, 1, "play", T0),
    ev(2, 7, 1, "progress", T0 + 60, watch=60),
    ev(3, 7, 2, "play", T0 + 100),
    ev(4, 7, 2, "progress", T0 + 130, watch=30),
    ev(5, 7, 2, "complete", T0 + 190, watch=90),
    ev(6, 7, 2, "rate", T0 + 200, rating=8),
    ev(7, 7, 1, "progress", T0 + 300, watch=80),
    ev(8, 7, 1, "rate", T0 + 310, rating=5),
    ev(9, 7, 0, "page_view", T0 + 320),
]


def test_user_fold_matches_hand_computed_values() -> None:
    s = None
    for event in USER_EVENTS:
        s = stats.apply_user(s, event)
    # watch time: film 1 0->60 (60), film 2 0->30->90 (90), film 1 again from 0 (switch) -> 80 (80)
    assert stats.summary(s) == {
        "events": 9, "watch_seconds": 230.0, "completed": 1, "rating_sum": 13.0, "ratings": 2,
        "last_seen": T0 + 320, "recent": [1, 2], "avg_rating": 6.5,
    }


def test_recent_films_are_unique_newest_first_and_capped() -> None:
    s = None
    for i in range(redis_keys.RECENT_MAX + 5):
        s = stats.apply_user(s, ev(i, 1, i + 1, "play", T0 + i))
    s = stats.apply_user(s, ev(999, 1, 10, "play", T0 + 999))
    assert s["recent"][:3] == [10, redis_keys.RECENT_MAX + 5, redis_keys.RECENT_MAX + 4]
    assert len(s["recent"]) == redis_keys.RECENT_MAX
    assert len(set(s["recent"])) == redis_keys.RECENT_MAX


FILM_ACTIONS = [ev(1, 1, 5, "play", T0), ev(2, 1, 5, "play", T0 + 1), ev(3, 2, 5, "play", T0 + 2),
                ev(4, 2, 5, "complete", T0 + 3), ev(5, 2, 5, "rate", T0 + 4, rating=9.0),
                ev(6, 3, 5, "rate", T0 + 5, rating=6.0)]
FILM_5 = {"views": 3, "viewers": 2, "completes": 1, "rating_sum": 15.0, "ratings": 2,
          "avg_rating": 7.5, "completion_rate": 1 / 3}


def test_film_fold_counts_views_viewers_completes_ratings() -> None:
    s = None
    for action, new_viewer in zip(FILM_ACTIONS, (True, False, True, False, False, False)):
        s = stats.apply_film(s, action, new_viewer)
    assert stats.summary(s) == FILM_5


def test_fold_films_finds_new_viewers_within_the_batch_and_against_the_table() -> None:
    other = ev(7, 1, 6, "play", T0 + 6)
    folded, new_viewers = stats.fold_films({}.get, {"6:1"}.__contains__, [*FILM_ACTIONS, other])
    assert stats.summary(folded[5]) == FILM_5
    assert folded[6] == {**stats.new_film_stats(), "views": 1}  # user 1 had watched film 6 before
    assert new_viewers == ["5:1", "5:2"]


def test_play_buckets_count_plays_per_film_and_step_and_drop_old_ones() -> None:
    step = TRENDING_STEP.total_seconds()
    start = T0 - T0 % step
    plays = [ev(1, 1, 5, "play", start + 1), ev(2, 2, 5, "play", start + step - 1), ev(3, 1, 5, "play", start + step),
             ev(4, 1, 6, "play", start + 5), ev(5, 1, 6, "complete", start + 6), ev(6, 1, 7, "play", start - 1)]
    assert stats.play_buckets(plays, since=start) == {(5, start): 2, (5, start + step): 1, (6, start): 1}


def test_top_k_orders_by_score_then_film_and_drops_zeros() -> None:
    assert live.top_k([(3, 2), (1, 5), (2, 2), (4, 0)], k=3) == ([1, 2, 3], [5.0, 2.0, 2.0])


def test_merge_parts_sums_fresh_parts_and_reports_stale_ones() -> None:
    import msgpack

    parts = {b"a": msgpack.packb([100.0, [1, 2], [3.0, 1.0]]), b"b": msgpack.packb([95.0, [2, 3], [4.0, 1.0]]),
             b"old": msgpack.packb([10.0, [9], [100.0]])}
    assert live.merge_parts(parts, now=100.0, stale_s=30) == ([2, 1, 3], [5.0, 3.0, 1.0], [b"old"])


@pytest.fixture
def faust_app():
    from app.main import app

    app.finalize()  # store is memory:// by default (FAUST_STORE)
    app.flow_control.resume()
    return app


def test_fold_users_folds_each_user_in_order_from_the_stored_value() -> None:
    stored = {7: stats.apply_user(None, USER_EVENTS[0])}
    other = ev(50, 8, 3, "play", T0 + 5)
    folded = stats.fold_users(stored.get, [*USER_EVENTS[1:4], other, *USER_EVENTS[4:]])
    expected = None
    for event in USER_EVENTS:
        expected = stats.apply_user(expected, event)
    assert folded == {7: expected, 8: stats.apply_user(None, other)}


@pytest.mark.redis_db(11)
async def test_user_agent_folds_a_batch_per_message(faust_app, redis_settings, monkeypatch) -> None:
    from aiokafka.partitioner import DefaultPartitioner
    from faust.types import TP

    monkeypatch.setattr(stats, "settings", redis_settings)
    # No broker here: place changelog keys the way the (unstarted) Kafka producer would.
    partitions = list(range(redis_settings.topic_partitions))
    monkeypatch.setattr(faust_app.producer, "key_partition",
                        lambda topic, key: TP(topic, DefaultPartitioner()(key, partitions, partitions)))
    expected = None
    for event in USER_EVENTS:
        expected = stats.apply_user(expected, event)
    other = ev(50, 8, 3, "play", T0 + 5)
    async with stats.user_stats_agent.test_context() as agent:
        await agent.put(batches.encode(USER_EVENTS[:4]), partition=0)
        await agent.put(b"corrupt", partition=0)  # logged and skipped, the stream goes on
        await agent.put(batches.encode([*USER_EVENTS[4:], other]), partition=0)
        assert user_stats[7] == expected
        assert user_stats[8] == stats.apply_user(None, other)


def test_user_changelog_lands_on_the_source_partition() -> None:
    """use_partitioner is only right if a key's changelog partition is its source partition."""
    from aiokafka.partitioner import DefaultPartitioner

    from app.producer import message_key

    partitions = list(range(8))
    partition = DefaultPartitioner()
    for user_id in (1, 7, 123, 99_999, 2**40):
        changelog_key = user_stats.changelog_topic.prepare_key(user_id, None)[0]
        assert partition(changelog_key, partitions, partitions) == partition(message_key(user_id), partitions, partitions)


@pytest.mark.redis_db(11)
async def test_film_agent_counts_unique_viewers_and_windows_expire(faust_app, redis_settings, monkeypatch) -> None:
    monkeypatch.setattr(stats, "settings", redis_settings)
    import time

    now = time.time()
    hour = 3600.0
    expiring = now - TRENDING_EXPIRES.total_seconds() - 3 * hour  # windowed; its early windows are stale
    old = now - (TRENDING_EXPIRES + TRENDING_WINDOW).total_seconds() - hour  # every window stale: not windowed
    plays = [ev(i, user, 42, "play", ts) for i, (user, ts) in enumerate(
        ((1, now - 10), (1, now - 5), (2, now - 1), (3, old), (4, expiring)))]
    async with stats.film_stats_agent.test_context() as agent:
        await agent.put(batches.encode(plays[:2]), partition=0)
        await agent.put(batches.encode(plays[2:]), partition=0)
        assert film_stats[42]["views"] == 5 and film_stats[42]["viewers"] == 4
        assert film_viewers["42:1"] is True
        # three plays within the trending window of the newest event time
        windows = {rng: value for (film, rng), value in film_plays_window.table.data.items() if film == 42}
        assert max(windows.values()) == 3
        assert sum(windows.values()) == 6 * 3 + 6  # each windowed play counts in 6 hopping windows
        assert stats.trending_at(now) == ([42], [3.0])
        await film_plays_window.table._del_old_keys()
        remaining = {rng for (film, rng) in film_plays_window.table.data if film == 42}
        assert len(remaining) < len(windows)
        assert all(end > now - TRENDING_EXPIRES.total_seconds() for _, end in remaining)
