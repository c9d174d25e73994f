"""Events as Kafka messages, with an optional share of deliberately broken ones.

Broken messages exercise the dead-letter path: each is one of the faults the
site could send (cut-off JSON, a missing required field, an unknown event
type, a non-positive user id) and `app.events.parse_event` rejects all of them.
"""
from __future__ import annotations

import json
from typing import Iterable, Iterator

import numpy as np

from app.events import Event
from app.producer import message_key, to_message

BAD_KINDS: tuple[str, ...] = ("malformed_json", "missing_field", "unknown_event_type", "bad_user_id")
_REQUIRED = ("event_id", "user_id", "event_type", "ts")


def corrupt(event: Event, kind: str, rng: np.random.Generator) -> bytes:
    """A message value derived from `event` that the loader must dead-letter."""
    data = event.to_json()
    if kind == "malformed_json":
        raw = event.to_bytes()
        return raw[: int(rng.integers(1, len(raw) - 1))]
    if kind == "missing_field":
        del data[_REQUIRED[int(rng.integers(0, len(_REQUIRED)))]]
    elif kind == "unknown_event_type":
        data["event_type"] = "hover"
    elif kind == "bad_user_id":
        data["user_id"] = -int(rng.integers(1, 1000))
    else:
        raise ValueError(f"unknown kind of bad event {kind!r}; one of {', '.join(BAD_KINDS)}")
    return json.dumps(data, separators=(",", ":")).encode()


def bad_positions(n: int, bad_fraction: float, seed: int) -> np.ndarray:
    """Sorted positions of the `round(n * bad_fraction)` messages to corrupt."""
    if not 0.0 <= bad_fraction <= 1.0:
        raise ValueError(f"bad fraction must be within 0..1, got {bad_fraction}")
    rng = np.random.default_rng([seed, 3])
    return np.sort(rng.choice(n, size=int(round(n * bad_fraction)), replace=False))


def messages(events: Iterable[Event], n: int, bad_fraction: float = 0.0, seed: int = 0) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) per event; a `bad_fraction` share of the n values is corrupted."""
    bad = set(bad_positions(n, bad_fraction, seed).tolist())
    rng = np.random.default_rng([seed, 4])
    for i, event in enumerate(events):
        if i in bad:
            kind = BAD_KINDS[int(rng.integers(0, len(BAD_KINDS)))]
            yield message_key(event.user_id), corrupt(event, kind, rng)
        else:
            yield to_message(event)
