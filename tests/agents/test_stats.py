"""Stats: pure folds against hand-computed values, and the agents via test_context()."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from app.events import Event
from app.storage import redis_keys
from agents import batches, live, stats
from agents.batches import StatsBatch
from tables.stats import TRENDING_EXPIRES, TRENDING_STEP, TRENDING_WINDOW, film_plays_window, film_stats, film_viewers, user_stats

T0 = 1_700_000_000.0
NOW = 1_750_000_000.0  # wall clock of the fold (record write times)


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


def at(partition: int, events: list[Event], first_offset: int = 0) -> StatsBatch:
    """`events` as a stats batch from source `partition`, at consecutive offsets."""
    return StatsBatch.of_partition(partition, events, range(first_offset, first_offset + len(events)))


def public(records: dict) -> dict:
    """Records without the fold's bookkeeping (what readers and hand-folded values compare on)."""
    return {key: {k: v for k, v in r.items() if k not in ("src", "at")} for key, r in records.items()}


def test_fold_films_finds_new_viewers_within_the_batch_and_against_the_table() -> None:
    other = ev(7, 1, 6, "play", T0 + 6)
    known = {"6:1": [0, 99, T0]}
    folded, viewers, applied = stats.fold_films({}.get, known.get, at(3, [*FILM_ACTIONS, other]), NOW, 0.0)
    assert stats.summary(folded[5]) == FILM_5 and folded[5]["src"] == {"3": 5}
    assert public(folded)[6] == {**stats.new_film_stats(), "views": 1}  # user 1 had watched film 6 before
    assert viewers == {"5:1": [3, 0, NOW], "5:2": [3, 2, NOW]}
    assert applied == [*FILM_ACTIONS, other]


def test_summary_leaves_out_the_bookkeeping() -> None:
    record = stats.fold_users({}.get, at(0, USER_EVENTS[:2]), NOW)[7]
    assert {"src", "at", "cur_film", "cur_pos"} <= record.keys()
    assert not {"src", "at", "cur_film", "cur_pos"} & stats.summary(record).keys()


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
    stored = stats.fold_users({}.get, at(1, USER_EVENTS[:1]), NOW)
    other = ev(50, 8, 3, "play", T0 + 5)
    folded = stats.fold_users(stored.get, at(1, [*USER_EVENTS[1:4], other, *USER_EVENTS[4:]], 1), NOW + 1)
    assert public(folded) == {7: _fold(USER_EVENTS), 8: stats.apply_user(None, other)}
    assert folded[7]["src"] == {"1": len(USER_EVENTS)} and folded[8]["src"] == {"1": 4}
    assert folded[7]["at"] == NOW + 1


def _fold(events: list[Event]) -> dict:
    state = None
    for event in events:
        state = stats.apply_user(state, event)
    return state


def _replay(pieces: list[StatsBatch], fold) -> dict:
    """Fold stats batches one after the other, as the agent does (each result stored)."""
    table: dict = {}
    for piece in pieces:
        table.update(fold(table.get, piece))
    return table


MIXED = [ev(i, 1 + i % 3, 1 + i % 4, kind, T0 + i, watch=float(i), rating=1.0 + i % 9)
         for i, kind in enumerate(["play", "progress", "complete", "rate", "play", "click", "play", "rate"] * 3)]


@pytest.mark.parametrize("pieces", [
    [(0, 24), (0, 24)],  # the whole batch twice (a loader crash after the stats send)
    [(0, 10), (0, 24)],  # re-read from the last commit with other batch boundaries (overlap)
    [(0, 10), (5, 17), (3, 24), (0, 24)],  # several overlapping re-deliveries
    [(0, 8), (8, 16), (16, 24)],  # no re-delivery at all
])
def test_user_stats_are_exact_under_redelivery(pieces: list[tuple[int, int]]) -> None:
    batches_ = [StatsBatch.of_partition(2, MIXED[lo:hi], range(100 + lo, 100 + hi)) for lo, hi in pieces]
    table = _replay(batches_, lambda current, piece: stats.fold_users(current, piece, NOW))
    expected = {}
    for user in {e.user_id for e in MIXED}:
        expected[user] = _fold([e for e in MIXED if e.user_id == user])
    assert public(table) == expected


@pytest.mark.parametrize("pieces", [
    [(0, 24), (0, 24)], [(0, 10), (0, 24)], [(0, 10), (5, 17), (3, 24), (0, 24)], [(0, 8), (8, 16), (16, 24)],
])
def test_film_stats_and_viewers_are_exact_under_redelivery_across_source_partitions(pieces) -> None:
    """A film batch mixes source partitions: events of partitions 0 and 1 interleaved, each in offset order."""
    sources = [(i % 2, 500 + i // 2) for i in range(len(MIXED))]
    film_actions = [(e, p, o) for e, (p, o) in zip(MIXED, sources) if e.event_type in ("play", "complete", "rate")]
    films: dict = {}
    viewers: dict = {}
    for lo, hi in pieces:
        chosen = [(e, p, o) for e, p, o in film_actions if lo <= MIXED.index(e) < hi]
        piece = StatsBatch([e for e, _, _ in chosen], [p for _, p, _ in chosen], [o for _, _, o in chosen])
        folded, entries, _ = stats.fold_films(films.get, viewers.get, piece, NOW, 0.0)
        films.update(folded)
        viewers.update(entries)
    expected: dict = {}
    seen_pairs: set = set()
    for e, _, _ in film_actions:
        new_viewer = e.event_type == "play" and (e.film_id, e.user_id) not in seen_pairs
        seen_pairs |= {(e.film_id, e.user_id)} if e.event_type == "play" else set()
        expected[e.film_id] = stats.apply_film(expected.get(e.film_id), e, new_viewer)
    assert public(films) == expected
    assert set(viewers) == {f"{f}:{u}" for f, u in seen_pairs}


def test_a_crash_between_the_viewer_and_the_film_write_still_counts_each_viewer_once() -> None:
    """The two writes go to different changelogs: either may be lost in a crash."""
    play = at(0, [ev(1, 7, 5, "play", T0)], first_offset=40)
    films, viewers, _ = stats.fold_films({}.get, {}.get, play, NOW, 0.0)
    # A: the viewer entry survived, the film record did not -> replay counts the viewer (the entry is its own)
    again, _, _ = stats.fold_films({}.get, viewers.get, play, NOW, 0.0)
    assert again[5]["viewers"] == 1
    # B: the film record survived, the viewer entry did not -> replay skips the play but restores the entry
    again, restored, applied = stats.fold_films(films.get, {}.get, play, NOW, 0.0)
    assert (again[5]["views"], again[5]["viewers"], applied) == (1, 1, [])
    assert restored == {"5:7": [0, 40, NOW]}
    # ... so the user's next play is not a new viewer
    later, _, _ = stats.fold_films(again.get, restored.get, at(0, [ev(2, 7, 5, "play", T0 + 9)], 41), NOW, 0.0)
    assert (later[5]["views"], later[5]["viewers"]) == (2, 1)


def test_old_viewer_entries_are_restamped_and_expired_ones_found_per_film_partition() -> None:
    old = {"5:7": [0, 40, NOW - 100.0]}
    _, entries, _ = stats.fold_films({}.get, old.get, at(0, [ev(2, 7, 5, "play", T0)], 41), NOW,
                                     refresh_before=NOW - 50.0)
    assert entries == {"5:7": [0, 40, NOW]}  # same origin, new time: a regular viewer does not expire
    table = {"5:7": [0, 40, NOW - 100.0], "5:8": [0, 41, NOW], "6:7": [1, 3, NOW - 100.0], "9:1": True}
    q5 = batches.film_partition(5, 4)
    expired = stats.expired_viewers(table.items(), q5, 4, before=NOW - 50.0)
    assert "5:7" in expired and "5:8" not in expired
    assert ("6:7" in expired) == (batches.film_partition(6, 4) == q5)


def test_expired_users_are_those_of_the_partition_not_written_for_the_ttl() -> None:
    table = {1: {"src": {"0": 5}, "at": NOW - 100.0}, 2: {"src": {"0": 6}, "at": NOW},
             3: {"src": {"1": 7}, "at": NOW - 100.0}, 4: {"events": 1}}
    assert stats.expired_users(table.items(), 0, before=NOW - 50.0) == [1]


def test_each_partition_is_swept_at_most_once_per_interval() -> None:
    expiry = stats.Expiry(ttl_s=1000.0)
    assert expiry.every_s == 100.0
    assert expiry.due(0, NOW) and expiry.due(1, NOW)
    assert not expiry.due(0, NOW + 99.0)
    assert expiry.due(0, NOW + 100.0)
    assert stats.Expiry(ttl_s=30 * 86_400).every_s == 3600.0


@pytest.mark.redis_db(11)
async def test_user_agent_folds_a_batch_per_message(faust_app, redis_settings, monkeypatch) -> None:
    from aiokafka.partitioner import DefaultPartitioner
    from faust.types import TP

    monkeypatch.setattr(stats, "settings", redis_settings)
    # No broker here: place changelog keys the way the (unstarted) Kafka producer would.
    partitions = list(range(redis_settings.topic_partitions))
    monkeypatch.setattr(faust_app.producer, "key_partition",
                        lambda topic, key: TP(topic, DefaultPartitioner()(key, partitions, partitions)))
    other = ev(50, 8, 3, "play", T0 + 5)
    second = at(0, [*USER_EVENTS[4:], other], first_offset=4)
    async with stats.user_stats_agent.test_context() as agent:
        await agent.put(batches.encode(at(0, USER_EVENTS[:4])), partition=0)
        await agent.put(b"corrupt", partition=0)  # logged and skipped, the stream goes on
        await agent.put(batches.encode(second), partition=0)
        await agent.put(batches.encode(second), partition=0)  # re-delivered: changes nothing
        assert public({7: user_stats[7], 8: user_stats[8]}) == {7: _fold(USER_EVENTS), 8: stats.apply_user(None, other)}


class Clock:
    """Stands in for the `time` module of agents.stats (the agents read the wall clock for expiry)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


@pytest.mark.redis_db(11)
async def test_agents_expire_users_and_viewers_not_written_for_the_ttl(faust_app, redis_settings, monkeypatch) -> None:
    from aiokafka.partitioner import DefaultPartitioner
    from faust.types import TP

    day = 86_400.0
    clock = Clock(NOW)
    monkeypatch.setattr(stats, "settings", redis_settings.with_overrides(stats_ttl_days=1.0))
    monkeypatch.setattr(stats, "time", clock)
    partitions = list(range(redis_settings.topic_partitions))
    monkeypatch.setattr(faust_app.producer, "key_partition",
                        lambda topic, key: TP(topic, DefaultPartitioner()(key, partitions, partitions)))
    q = batches.film_partition(77, redis_settings.topic_partitions)
    async with stats.user_stats_agent.test_context() as users, stats.film_stats_agent.test_context() as films:
        await users.put(batches.encode(at(0, [ev(1, 901, 77, "play", T0)])), partition=0)
        await films.put(batches.encode(at(0, [ev(1, 901, 77, "play", T0)])), partition=q)
        clock.now = NOW + 0.75 * day  # 901 plays again: its viewer entry (older than TTL/2) is re-stamped
        await films.put(batches.encode(at(0, [ev(2, 901, 77, "play", T0 + 1)], first_offset=1)), partition=q)
        clock.now = NOW + 1.5 * day  # 901's user record is older than the TTL, its viewer entry is not
        await users.put(batches.encode(at(0, [ev(3, 902, 77, "play", T0 + 2)], first_offset=2)), partition=0)
        await films.put(batches.encode(at(0, [ev(3, 902, 77, "play", T0 + 2)], first_offset=2)), partition=q)
        assert 901 not in user_stats and 902 in user_stats
        assert film_viewers["77:901"] == [0, 0, NOW + 0.75 * day] and "77:902" in film_viewers
        clock.now = NOW + 2.0 * day  # an hour (the sweep interval) later: 901's entry is older than the TTL
        await films.put(batches.encode(at(0, [ev(4, 903, 77, "play", T0 + 3)], first_offset=3)), partition=q)
        assert "77:901" not in film_viewers and "77:902" in film_viewers
        assert film_stats[77]["viewers"] == 3  # film records do not expire


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
        await agent.put(batches.encode(at(0, plays[:2])), partition=0)
        await agent.put(batches.encode(at(0, plays[2:], first_offset=2)), partition=0)
        await agent.put(batches.encode(at(0, plays, first_offset=0)), partition=0)  # re-delivered: no change
        assert film_stats[42]["views"] == 5 and film_stats[42]["viewers"] == 4
        assert film_viewers["42:1"][:2] == [0, 0]  # made a viewer by the play at source offset 0
        # three plays within the trending window of the newest event time
        windows = {rng: value for (film, rng), value in film_plays_window.table.data.items() if film == 42}
        assert max(windows.values()) == 3
        assert sum(windows.values()) == 6 * 3 + 6  # each windowed play counts in 6 hopping windows
        assert stats.trending_at(now) == ([42], [3.0])
        await film_plays_window.table._del_old_keys()
        remaining = {rng for (film, rng) in film_plays_window.table.data if film == 42}
        assert len(remaining) < len(windows)
        assert all(end > now - TRENDING_EXPIRES.total_seconds() for _, end in remaining)


@st.composite
def deliveries(draw, n: int = len(MIXED)) -> list[tuple[int, int]]:
    """Delivery ranges as the loader produces them: each starts at or before the end of what
    was delivered so far (a re-read starts from a committed offset, never past unsent events)."""
    out, end = [], 0
    while end < n or draw(st.booleans()):
        lo = draw(st.integers(0, end))
        if lo == n:
            break
        hi = n - draw(st.integers(0, n - lo - 1))  # simplest: everything up to the end
        out.append((lo, hi))
        end = max(end, hi)
    return out


def _only(batch: StatsBatch, keep) -> StatsBatch:
    rows = [row for row in batch.rows() if keep(*row)]
    return StatsBatch(*map(list, zip(*rows))) if rows else StatsBatch()


@settings(max_examples=300, deadline=None)
@given(deliveries(), st.integers(1, 5))
def test_any_redelivery_pattern_gives_the_fold_of_the_distinct_events(pieces, chunk: int) -> None:
    """Users (each on the source partition its id hashes to) and films (film batches mixing
    both source partitions), each delivered range cut in chunks like the loader's messages."""
    counters = {0: 500, 1: 900}
    sources = []
    for e in MIXED:
        counters[e.user_id % 2] += 1
        sources.append((e.user_id % 2, counters[e.user_id % 2]))
    users: dict = {}
    films: dict = {}
    viewers: dict = {}
    for lo, hi in pieces:
        piece = StatsBatch(MIXED[lo:hi], [p for p, _ in sources[lo:hi]], [o for _, o in sources[lo:hi]])
        for part in piece.chunks(chunk):
            for p in (0, 1):  # the user batches: one per source partition
                users.update(stats.fold_users(users.get, _only(part, lambda e, q, o: q == p), NOW))
            actions = _only(part, lambda e, q, o: e.event_type in batches.FILM_ACTION_TYPES)
            folded, entries, _ = stats.fold_films(films.get, viewers.get, actions, NOW, 0.0)
            films.update(folded)
            viewers.update(entries)
    assert public(users) == {u: _fold([e for e in MIXED if e.user_id == u]) for u in {e.user_id for e in MIXED}}
    expected: dict = {}
    pairs: set = set()
    for e in MIXED:
        if e.event_type in batches.FILM_ACTION_TYPES:
            new_viewer = e.event_type == "play" and (e.film_id, e.user_id) not in pairs
            if e.event_type == "play":
                pairs.add((e.film_id, e.user_id))
            expected[e.film_id] = stats.apply_film(expected.get(e.film_id), e, new_viewer)
    assert public(films) == expected
