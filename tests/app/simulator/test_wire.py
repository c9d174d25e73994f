"""Kafka messages of simulated events, and the malformed share for the dead-letter path."""
from __future__ import annotations

import numpy as np
import pytest

from app.events import InvalidEvent, parse_event
from app.simulate import generate
from app.simulator.wire import BAD_KINDS, bad_positions, corrupt, messages

END = 1_750_000_000.0


@pytest.fixture(scope="module")
def events() -> list:
    return list(generate(40, 30, 600, seed=4, days=2, end_ts=END)[1])


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 1.0])
def test_bad_fraction_is_exact_and_only_bad_messages_are_rejected(events: list, fraction: float) -> None:
    bad = set(bad_positions(len(events), fraction, seed=9).tolist())
    assert len(bad) == round(len(events) * fraction)
    for i, ((key, value), event) in enumerate(zip(messages(events, len(events), fraction, seed=9), events)):
        assert key == str(event.user_id).encode()
        if i in bad:
            with pytest.raises(InvalidEvent):
                parse_event(value, now=END)
        else:
            assert parse_event(value, now=END) == event


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_each_kind_of_fault_is_rejected_with_its_reason(events: list, kind: str) -> None:
    rng = np.random.default_rng(0)
    reasons = set()
    for event in events[:40]:
        with pytest.raises(InvalidEvent) as info:
            parse_event(corrupt(event, kind, rng), now=END)
        reasons.add(info.value.reason)
    expected = {
        "malformed_json": {"malformed_json"},
        "missing_field": {"missing_event_id", "missing_user_id", "missing_event_type", "missing_ts"},
        "unknown_event_type": {"unknown_event_type"},
        "bad_user_id": {"bad_user_id"},
    }[kind]
    assert reasons <= expected and reasons


def test_bad_arguments_are_refused(events: list) -> None:
    with pytest.raises(ValueError, match="within 0..1"):
        bad_positions(10, 1.5, seed=0)
    with pytest.raises(ValueError, match="unknown kind"):
        corrupt(events[0], "sneaky", np.random.default_rng(0))
