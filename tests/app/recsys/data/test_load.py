"""The client-side deduplication of loaded rows (app/recsys/data/load.py; the query itself: tests/integration/test_load.py)."""
from __future__ import annotations

import numpy as np

from app.recsys.data.load import one_per_key


def test_one_per_key_is_none_when_nothing_repeats() -> None:
    assert one_per_key(np.array([5, 1, 9], dtype=np.uint64)) is None
    assert one_per_key(np.array([], dtype=np.uint64)) is None


def test_one_per_key_keeps_the_first_copy_in_read_order() -> None:
    keys = np.array([7, 3, 7, 2**64 - 1, 3, 3, 0], dtype=np.uint64)
    assert one_per_key(keys).tolist() == [0, 1, 3, 6]
