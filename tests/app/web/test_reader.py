"""Merging ranked lists: the filtering and padding of every answer."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from app.web.reader import merge_ranked

film_lists = st.lists(st.integers(1, 50), max_size=30).map(lambda ids: (ids, [float(-i) for i in range(len(ids))]))


def test_merge_skips_excluded_and_repeats_and_pads_in_order() -> None:
    als = ([1, 2, 3, 4], [0.9, 0.8, 0.7, 0.6])
    trending = ([3, 7, 8], [30.0, 20.0, 10.0])
    popular = ([9, 7, 10], [3.0, 2.0, 1.0])
    assert merge_ranked(6, {2, 8}, als, trending, popular) == ([1, 3, 4, 7, 9, 10], [0.9, 0.7, 0.6, 20.0, 3.0, 1.0])


def test_merge_stops_at_limit() -> None:
    assert merge_ranked(2, set(), ([5, 6, 7], [3.0, 2.0, 1.0])) == ([5, 6], [3.0, 2.0])


@given(limit=st.integers(1, 20), exclude=st.sets(st.integers(1, 50)), lists=st.lists(film_lists, max_size=4))
def test_merge_properties(limit: int, exclude: set[int], lists: list[tuple[list[int], list[float]]]) -> None:
    ids, scores = merge_ranked(limit, exclude, *lists)
    available = [f for film_ids, _ in lists for f in film_ids if f not in exclude]
    assert len(ids) == len(scores) == min(limit, len(set(available)))
    assert len(set(ids)) == len(ids)
    assert not set(ids) & exclude
    first_seen = list(dict.fromkeys(available))
    assert ids == first_seen[: len(ids)]

