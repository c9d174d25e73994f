"""The experiment value object: validation, lifecycle, JSON round trip."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.experiments.model import EPOCH, Experiment, Guardrail, InvalidExperiment, State

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def exp(**changes: object) -> Experiment:
    return Experiment(**{"id": "exp-1", "control": "v1", "challenger": "v2", "created_at": T0, **changes})


def test_defaults_follow_the_brief() -> None:
    e = exp()
    assert e.share == 0.1 and e.primary == "watch_time_per_user_day"
    assert [g.metric for g in e.guardrails] == ["d1_retention", "ctr"]
    assert e.state is State.PLANNED and e.revision == 1 and e.started_at is None


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"id": "bad id"}, "experiment id"),
        ({"control": ""}, "required"),
        ({"share": 0.0}, "share"),
        ({"share": 1.0}, "share"),
        ({"primary": "happiness"}, "unknown metric"),
        ({"guardrails": (Guardrail("ctr", 0.1), Guardrail("ctr", 0.2))}, "different metric"),
        ({"guardrails": (Guardrail("watch_time_per_user_day", 0.1),)}, "different metric"),
        ({"mde": 0.0}, "mde"),
        ({"min_users_per_arm": 0}, "minimum sample"),
        ({"max_duration": timedelta(0)}, "duration"),
        ({"created_at": datetime(2026, 3, 1)}, "timezone-aware"),
    ],
)
def test_bad_definitions_are_refused_with_a_reason(changes: dict, message: str) -> None:
    with pytest.raises(InvalidExperiment, match=message):
        exp(**changes)


def test_guardrail_parse() -> None:
    assert Guardrail.parse("d7_retention=0.1") == Guardrail("d7_retention", 0.1)
    assert Guardrail.parse("ctr") == Guardrail("ctr", 0.05)
    for bad in ("ctr=abc", "ctr=1.5", "nope=0.1"):
        with pytest.raises(InvalidExperiment):
            Guardrail.parse(bad)


def test_lifecycle() -> None:
    running = exp().moved_to(State.RUNNING, T0 + timedelta(hours=1))
    assert (running.state, running.revision, running.started_at) == (State.RUNNING, 2, T0 + timedelta(hours=1))
    assert running.deadline == T0 + timedelta(hours=1, days=14)
    done = running.moved_to(State.FINISHED, T0 + timedelta(days=3), "promote: challenger wins")
    assert (done.state, done.revision, done.decision, done.ended_at) == (
        State.FINISHED, 3, "promote: challenger wins", T0 + timedelta(days=3)
    )
    with pytest.raises(InvalidExperiment, match="cannot become running"):
        done.moved_to(State.RUNNING, T0)
    with pytest.raises(InvalidExperiment, match="cannot become finished"):
        exp().moved_to(State.FINISHED, T0)
    assert exp().moved_to(State.STOPPED, T0).state is State.STOPPED  # a planned experiment can be cancelled


def test_window_runs_from_the_start_to_the_end_now_or_the_deadline() -> None:
    running = exp(max_duration=timedelta(days=2)).moved_to(State.RUNNING, T0)
    assert running.window(T0 + timedelta(days=1)) == (T0, T0 + timedelta(days=1))
    assert running.window(T0 + timedelta(days=5)) == (T0, T0 + timedelta(days=2))  # capped at the deadline
    stopped = running.moved_to(State.STOPPED, T0 + timedelta(hours=5))
    assert stopped.window(T0 + timedelta(days=9)) == (T0, T0 + timedelta(hours=5))
    with pytest.raises(InvalidExperiment, match="has not started"):
        exp().window(T0)


def test_json_round_trip_and_epoch_means_unset() -> None:
    e = exp(guardrails=(Guardrail("d7_retention", 0.02),)).moved_to(State.RUNNING, T0)
    data = e.to_json()
    assert data["state"] == "running" and data["guardrails"] == [["d7_retention", 0.02]]
    assert data["hash_seed"] == e.hash_seed and data["threshold"] == e.threshold
    assert Experiment.from_json(data) == e
    assert exp(started_at=EPOCH).started_at is None


@given(
    experiment_id=st.text(max_size=80),
    share=st.floats(allow_nan=True, allow_infinity=True),
    mde=st.floats(allow_nan=True, allow_infinity=True),
    min_users=st.integers(min_value=-5, max_value=10**9),
    guardrail=st.text(max_size=40),
)
def test_arbitrary_definitions_are_valid_or_refused_with_a_reason(
    experiment_id: str, share: float, mde: float, min_users: int, guardrail: str
) -> None:
    try:
        e = exp(id=experiment_id, share=share, mde=mde, min_users_per_arm=min_users,
                guardrails=(Guardrail.parse(guardrail),))
    except InvalidExperiment as error:
        assert str(error)
    else:
        assert 0 < e.share < 1 and 0 < e.mde < 1 and e.min_users_per_arm >= 1
        assert Experiment.from_json(e.to_json()) == e
