"""Table declarations: where each table's changelog goes, and how the trending hours are keyed."""
from __future__ import annotations

from tables import stats


def test_tables_are_plain_keyed_tables_on_the_source_partition_count() -> None:
    for table in (stats.user_stats, stats.film_stats, stats.film_viewers, stats.film_plays_hourly):
        assert table.partitions == stats.settings.topic_partitions and table.window is None
    assert stats.user_stats.use_partitioner and not stats.film_stats.use_partitioner


def test_a_trending_window_is_a_whole_number_of_steps_within_the_expiry() -> None:
    assert stats.TRENDING_WINDOW % stats.TRENDING_STEP == stats.TRENDING_STEP * 0
    assert stats.TRENDING_WINDOW <= stats.TRENDING_EXPIRES
