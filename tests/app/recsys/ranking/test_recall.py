"""Recall of each source and the per-row top-n, on hand-made scores."""
from __future__ import annotations

import numpy as np
import pytest

from app.recsys.ranking.candidates import ItemScoreSource, UserBatch
from app.recsys.ranking.recall import source_recall, top_per_row
from tests.app.recsys.ranking.test_candidates import seen


def test_source_recall_counts_relevant_films_in_each_top_k_and_in_their_union() -> None:
    batch = UserBatch(seen=seen([[], []]))
    a = ItemScoreSource("a", np.array([6, 5, 4, 3, 2, 1], dtype=np.float32))  # top-2: 0, 1
    b = ItemScoreSource("b", np.array([1, 2, 3, 4, 5, 6], dtype=np.float32))  # top-2: 5, 4
    recall = source_recall([a, b], batch, [np.array([0, 5]), np.array([2])], k=2)
    # user 0: a finds 1 of 2, b 1 of 2, union 2 of 2; user 1 (film 2): none
    assert recall == {"a": pytest.approx(0.25), "b": pytest.approx(0.25), "union": pytest.approx(0.5)}


def test_top_per_row_orders_by_score_then_item_and_pads() -> None:
    ids, scores = top_per_row(np.array([0, 0, 0, 1]), np.array([1, 2, 3, 4]), np.array([0.9, 0.5, 0.5, 0.1]), 3, 2)
    assert ids.tolist() == [[1, 2], [4, -1], [-1, -1]]
    assert scores[0].tolist() == pytest.approx([0.9, 0.5]) and np.isneginf(scores[2]).all()
