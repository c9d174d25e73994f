"""Recent plays as the similar-to-recent source reads them: offline for a whole matrix, online for one user."""
from __future__ import annotations

from app.recsys.data.dataset import Interactions, build_dataset
from app.recsys.ranking.history import recent_entries, recent_matrix, recent_row


def test_recent_matrix_weights_each_users_latest_films() -> None:
    it = Interactions.from_columns({"user_id": [1, 1, 1, 1, 2], "film_id": [10, 11, 12, 13, 10],
                                    "ts": [1.0, 4.0, 3.0, 2.0, 5.0], "event_type": ["play"] * 5})
    dataset = build_dataset(it)
    got = recent_matrix(dataset, last=2, decay=0.5).toarray()
    assert got.tolist() == [[0.0, 1.0, 0.5, 0.0], [1.0, 0.0, 0.0, 0.0]]  # user 1: film 11 (t 4), 12 (t 3)


def test_recent_row_is_one_users_recent_matrix_row_and_entries_its_stored_values() -> None:
    row = recent_row([3, -1, 1, 3, 0, 2], 5)  # newest first; unknown (-1) skipped, each film once, last 3
    assert row.toarray().tolist() == [[0.25, 0.5, 0.0, 1.0, 0.0]]
    films, weights = recent_entries([3, -1, 1, 3, 0, 2])
    assert films.tolist() == [0, 1, 3] and weights.tolist() == [0.25, 0.5, 1.0]
