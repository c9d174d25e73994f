"""Trending: plays per film partition and hour of event time, and the last hours' sum.

`tables.stats.film_plays_hourly["q:hour"]` = {film: plays} for the films of
film partition q: one entry per partition and hour (a few writes per stats
batch, a handful of lookups per read); trending is the sum of the last
TRENDING_WINDOW / TRENDING_STEP hours over the partitions a worker owns.
Only plays applied now (not re-deliveries, agents/folds.py) are counted.
"""
from __future__ import annotations

from collections import Counter
from typing import Callable, Iterable

from app.event_columns import TYPE_CODE
from agents.batches import StatsBatch
from tables.stats import TRENDING_STEP, TRENDING_WINDOW

_PLAY = TYPE_CODE["play"]


def play_buckets(actions: StatsBatch, since: float) -> Counter:
    """Plays per (film, start of their TRENDING_STEP bucket), plays before `since` left out."""
    step = TRENDING_STEP.total_seconds()
    plays = (actions.event_type == _PLAY) & (actions.ts >= since)
    ts = actions.ts[plays]
    return Counter(zip(actions.film_id[plays].tolist(), (ts - ts % step).tolist()))


def hour_key(partition: int, hour: float) -> str:
    """Key of `tables.stats.film_plays_hourly`: film partition and the start of the hour."""
    return f"{partition}:{int(hour)}"


def hours_of(key: str) -> tuple[int, int]:
    """(partition, hour start) of a `film_plays_hourly` key."""
    partition, hour = key.split(":", 1)
    return int(partition), int(hour)


def add_plays(current: Callable[[str], dict[str, int] | None], buckets: Counter,
              partition: int) -> dict[str, dict[str, int]]:
    """The `film_plays_hourly` entries of `partition` after adding `buckets` (per hour touched)."""
    out: dict[str, dict[str, int]] = {}
    for (film, hour), plays in buckets.items():
        key = hour_key(partition, hour)
        if key not in out:
            out[key] = dict(current(key) or {})
        counts = out[key]
        counts[str(film)] = counts.get(str(film), 0) + plays
    return out


def trending(current: Callable[[str], dict[str, int] | None], partitions: Iterable[int],
             ts: float) -> Counter:
    """Plays per film in the TRENDING_WINDOW of event time ending with the hour of `ts`, over the
    film partitions given (those this worker owns)."""
    step = TRENDING_STEP.total_seconds()
    last = ts - ts % step
    hours = [last - i * step for i in range(int(TRENDING_WINDOW / TRENDING_STEP))]
    totals: Counter = Counter()
    for partition in partitions:
        for hour in hours:
            for film, plays in (current(hour_key(partition, hour)) or {}).items():
                totals[int(film)] += plays
    return totals


def latest_play(actions: StatsBatch) -> float:
    """Event time of the newest play among `actions` (there is one)."""
    return float(actions.ts[actions.event_type == _PLAY].max())
