"""Generated sessions: every event valid on the wire, and the funnel consistent."""
from __future__ import annotations

import uuid
from dataclasses import fields

import numpy as np
import pytest

from app.events import parse_event, validate
from app.schema import EVENT_TYPES, INTERACTION_COLUMNS
from app.simulate import generate
from app.simulator.history import PROGRESS_EVERY_S, EventColumns, uuid4_strings

END = 1_750_000_000.0


@pytest.fixture(scope="module")
def events() -> EventColumns:
    return generate(150, 80, 15_000, seed=11, days=14, end_ts=END)[1]


def test_columns_follow_the_interactions_schema(events: EventColumns) -> None:
    assert tuple(f.name for f in fields(EventColumns)) == INTERACTION_COLUMNS
    assert all(len(column) == len(events) for column in events.columns())


def test_every_event_survives_the_wire_unchanged(events: EventColumns) -> None:
    for event in events:
        assert parse_event(event.to_bytes(), now=END) == event
        assert validate(event.to_json(), now=END) == event


def test_event_ids_are_unique_uuid4(events: EventColumns) -> None:
    ids = events.event_id.tolist()
    assert len(set(ids)) == len(ids)
    assert all(uuid.UUID(i).version == 4 and str(uuid.UUID(i)) == i for i in ids[:500])


def test_uuid4_strings_match_the_uuid_module_format() -> None:
    ids = uuid4_strings(np.random.default_rng(0), 1_000)
    parsed = [uuid.UUID(i) for i in ids.tolist()]
    assert all(p.version == 4 and p.variant == uuid.RFC_4122 for p in parsed)
    assert len({p.int for p in parsed}) == 1_000


def test_all_event_types_occur(events: EventColumns) -> None:
    assert set(events.event_type.tolist()) == set(EVENT_TYPES)


def test_watch_fields_are_consistent(events: EventColumns) -> None:
    kind = events.event_type
    watched = np.isin(kind, ["play", "progress", "complete"])
    assert np.all(events.duration_seconds[watched] > 0)
    assert np.all(events.duration_seconds[~watched] == 0)
    assert np.all(events.watch_seconds <= events.duration_seconds)
    done = kind == "complete"
    np.testing.assert_array_equal(events.watch_seconds[done], events.duration_seconds[done])
    beats = kind == "progress"
    assert np.all((events.watch_seconds[beats] > 0) & (events.watch_seconds[beats] <= events.duration_seconds[beats]))
    # Heartbeats every 15 minutes, plus the position where an unfinished watch stopped.
    on_beat = events.watch_seconds[beats] % PROGRESS_EVERY_S == 0
    assert on_beat.any() and not on_beat.all()


def test_ratings_only_on_rate_events_and_whole_numbers(events: EventColumns) -> None:
    rated = events.event_type == "rate"
    assert np.all((events.rating[rated] >= 1) & (events.rating[rated] <= 10))
    np.testing.assert_array_equal(events.rating[rated], np.round(events.rating[rated]))
    assert np.all(events.rating[~rated] == 0)


def test_sessions_belong_to_one_user_and_play_follows_click(events: EventColumns) -> None:
    by_session: dict[str, set[int]] = {}
    order: dict[tuple[str, int], list[str]] = {}
    for e in events:
        by_session.setdefault(e.session_id, set()).add(e.user_id)
        if e.film_id:
            order.setdefault((e.session_id, e.film_id), []).append(e.event_type)
    assert all(len(users) == 1 for users in by_session.values())
    for types in order.values():
        if "play" in types and "click" in types:
            assert types.index("click") < types.index("play")
        if "complete" in types:
            assert types.index("play") < types.index("complete")
    page_views = events.film_id[events.event_type == "page_view"]
    assert (page_views == 0).any() and (page_views > 0).any()


def test_sessions_start_more_in_the_evening_than_at_night(events: EventColumns) -> None:
    home = (events.event_type == "page_view") & (events.film_id == 0)
    hours = (events.ts[home] // 3600 % 24).astype(int)
    evening, night = np.isin(hours, [19, 20, 21]).sum(), np.isin(hours, [2, 3, 4]).sum()
    assert evening > 3 * night
