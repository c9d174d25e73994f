"""Input parsing of the handlers: only plain positive integers in range pass."""
from __future__ import annotations

import pytest

from app.web.handlers import bounded_int
from app.web.openapi import MAX_ID, MAX_LIMIT


@pytest.mark.parametrize("raw, expected", [("1", 1), ("100", 100), ("007", 7), (str(MAX_ID), MAX_ID)])
def test_accepts_positive_integers_in_range(raw: str, expected: int) -> None:
    assert bounded_int(raw, MAX_ID) == expected


@pytest.mark.parametrize(
    "raw", ["", "0", "-1", "+1", " 1", "1.0", "1e3", "abc", "²", "١٢", str(MAX_ID + 1), "9" * 5000, "0x10"]
)
def test_rejects_everything_else(raw: str) -> None:
    assert bounded_int(raw, MAX_ID) is None


def test_limit_bound() -> None:
    assert bounded_int(str(MAX_LIMIT), MAX_LIMIT) == MAX_LIMIT
    assert bounded_int(str(MAX_LIMIT + 1), MAX_LIMIT) is None
