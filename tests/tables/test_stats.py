"""Table declarations: windows follow the explicit event time; the read side trails it."""
from __future__ import annotations

from tables import stats


def test_windows_use_event_time_and_trending_reads_the_window_ending_at_it() -> None:
    at = stats.EventTime(1_700_000_000.0)
    assert stats.film_plays_window.get_timestamp(at) == 1_700_000_000.0
    lag = (stats.TRENDING_WINDOW - stats.TRENDING_STEP).total_seconds()
    assert stats.film_plays_trailing.get_timestamp(at) == 1_700_000_000.0 - lag
    window = stats.film_plays_window.table.window
    start, end = window.current(1_700_000_000.0 - lag)
    assert start <= 1_700_000_000.0 - lag and end >= 1_700_000_000.0  # the trailing window covers the event


def test_windowed_counts_expire_and_keys_are_indexed() -> None:
    window = stats.film_plays_window.table.window
    assert window.expires == stats.TRENDING_EXPIRES.total_seconds()
    assert stats.film_plays_window.key_index_table is not None
    assert stats.film_plays_trailing.key_index_table is stats.film_plays_window.key_index_table
