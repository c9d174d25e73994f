"""Stats folds: hand-computed values, exactness under re-delivery, and the batch fold equal to the per-event one."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from app.events import Event
from app.storage import redis_keys
from agents import batches, folds as stats, trending
from agents.batches import StatsBatch
from tables.stats import TRENDING_STEP

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
    assert applied.events() == at(3, [*FILM_ACTIONS, other]).events()


def test_summary_leaves_out_the_bookkeeping() -> None:
    record = stats.fold_users({}.get, at(0, USER_EVENTS[:2]), NOW)[7]
    assert {"src", "at", "cur_film", "cur_pos"} <= record.keys()
    assert not {"src", "at", "cur_film", "cur_pos"} & stats.summary(record).keys()


def test_play_buckets_count_plays_per_film_and_step_and_drop_old_ones() -> None:
    step = TRENDING_STEP.total_seconds()
    start = T0 - T0 % step
    plays = [ev(1, 1, 5, "play", start + 1), ev(2, 2, 5, "play", start + step - 1), ev(3, 1, 5, "play", start + step),
             ev(4, 1, 6, "play", start + 5), ev(5, 1, 6, "complete", start + 6), ev(6, 1, 7, "play", start - 1)]
    assert trending.play_buckets(at(0, plays), since=start) == {(5, start): 2, (5, start + step): 1, (6, start): 1}


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
        piece = StatsBatch.from_events([e for e, _, _ in chosen], [p for _, p, _ in chosen], [o for _, _, o in chosen])
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
    assert (again[5]["views"], again[5]["viewers"], len(applied)) == (1, 1, 0)
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
    return batch[np.array([bool(keep(*row)) for row in batch.rows()], dtype=bool)] if len(batch) else batch


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
        piece = StatsBatch.from_events(MIXED[lo:hi], [p for p, _ in sources[lo:hi]], [o for _, o in sources[lo:hi]])
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


KINDS = ("play", "progress", "complete", "rate", "click", "page_view", "impression")


@st.composite
def user_histories(draw) -> tuple[list[Event], int]:
    """Events of a few users on a few films (positions and ratings with fractions of a
    millisecond / point), and where the stored part ends."""
    n = draw(st.integers(1, 40))
    events = []
    for i in range(n):
        kind = draw(st.sampled_from(KINDS))
        film = 0 if kind == "page_view" else draw(st.integers(1, 4))
        watch = draw(st.floats(0, 5000, allow_nan=False)) if kind in ("play", "progress", "complete") else 0.0
        rating = draw(st.floats(1, 10, allow_nan=False)) if kind == "rate" else 0.0
        events.append(ev(i, draw(st.integers(1, 4)), film, kind, T0 + draw(st.integers(0, 100)), watch, rating))
    return events, draw(st.integers(0, n))


@settings(max_examples=400, deadline=None)
@given(user_histories())
def test_the_batch_user_fold_equals_the_per_event_fold(history) -> None:
    """Stored records from a first part of the history, then the rest as one batch."""
    events, cut = history
    stored = stats.fold_users({}.get, at(0, events[:cut]), NOW) if cut else {}
    changed: dict = {}
    folded = stats.fold_users(stored.get, at(0, events[cut:], first_offset=cut), NOW + 1, changed.__setitem__)
    for user in {e.user_id for e in events[cut:]}:
        expected = _fold([e for e in events if e.user_id == user])
        assert public({user: folded[user]})[user] == expected
        assert folded[user]["src"] == {"0": max(i for i, e in enumerate(events) if e.user_id == user)}
        before = stored.get(user, {}).get("recent", [])
        assert (user in changed) == (expected["recent"] != before)


def _sequential_films(films: dict, viewers: dict, batch: StatsBatch, now: float) -> tuple[dict, dict]:
    """The per-action film fold (marks per film and source partition, viewer entries), as written
    before the fold was vectorised: the reference for `fold_films`."""
    films, out_viewers = {k: {**v, "src": dict(v["src"])} for k, v in films.items()}, {}
    for action, p, o in batch.rows():
        record = films.get(action.film_id)
        mark = record["src"].get(str(p), -1) if record else -1
        fresh = o > mark
        new_viewer = False
        if action.event_type == "play":
            pair = f"{action.film_id}:{action.user_id}"
            entry = out_viewers[pair] if pair in out_viewers else viewers.get(pair)
            if not fresh:
                if pair not in out_viewers:
                    out_viewers[pair] = entry if entry is not None else [p, o, now]
                continue
            new_viewer = entry is None or entry[:2] == [p, o]
            if new_viewer:
                out_viewers[pair] = [p, o, now]
        elif not fresh:
            continue
        record = stats.apply_film(record, action, new_viewer)
        record["src"] = {**record.get("src", {}), str(p): o}
        films[action.film_id] = record
    return films, out_viewers


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(("play", "complete", "rate")), st.integers(1, 3), st.integers(1, 3),
                          st.integers(0, 1), st.floats(1, 10, allow_nan=False)), min_size=1, max_size=30),
       st.integers(0, 30), st.integers(0, 30))
def test_the_batch_film_fold_equals_the_per_action_fold(actions, cut, replayed) -> None:
    """Actions from two source partitions; the first part stored, then a batch that repeats
    `replayed` stored actions before the new ones (a re-delivery)."""
    offsets = {0: 100, 1: 500}
    rows = []
    for i, (kind, film, user, p, rating) in enumerate(actions):
        offsets[p] += 1
        rows.append((ev(i, user, film, kind, T0 + i, rating=rating if kind == "rate" else 0.0), p, offsets[p]))
    cut = min(cut, len(rows))
    batch_of = lambda part: StatsBatch.from_events([e for e, _, _ in part], [p for _, p, _ in part],
                                                   [o for _, _, o in part])
    films, viewers = _sequential_films({}, {}, batch_of(rows[:cut]), NOW)
    batch = batch_of(rows[max(0, cut - replayed):])
    expected, expected_viewers = _sequential_films(films, viewers, batch, NOW)
    folded, entries, _ = stats.fold_films(films.get, viewers.get, batch, NOW, 0.0)
    assert folded == {f: r for f, r in expected.items() if f in set(batch.film_id.tolist())}
    assert entries == expected_viewers


@pytest.mark.parametrize("cut", [0, 10, 30, 55])
def test_the_batch_fold_caps_recent_films_like_the_per_event_fold(cut: int) -> None:
    n = redis_keys.RECENT_MAX + 12
    events = [ev(i, 1, 1 + (i * 7) % (n - 3), "play", T0 + i) for i in range(n)]  # some films come back
    stored = stats.fold_users({}.get, at(0, events[:cut]), NOW) if cut else {}
    folded = stats.fold_users(stored.get, at(0, events[cut:], first_offset=cut), NOW)
    assert folded[1]["recent"] == _fold(events)["recent"] and len(folded[1]["recent"]) == redis_keys.RECENT_MAX


def test_plays_are_kept_per_partition_and_hour_and_trending_sums_the_last_six_hours() -> None:
    step = TRENDING_STEP.total_seconds()
    h0 = T0 - T0 % step
    table: dict = {}
    table.update(trending.add_plays(table.get, Counter({(5, h0): 2, (6, h0): 1, (5, h0 - 7 * step): 9}), 1))
    table.update(trending.add_plays(table.get, Counter({(5, h0): 1, (5, h0 - 5 * step): 4}), 1))
    assert table[trending.hour_key(1, h0)] == {"5": 3, "6": 1}
    assert trending.trending(table.get, [1], h0 + 10) == {5: 7, 6: 1}  # the hour 7 h back is out of the window
    assert trending.trending(table.get, [0, 2], h0) == {}
    assert trending.hours_of(trending.hour_key(3, h0)) == (3, int(h0))
