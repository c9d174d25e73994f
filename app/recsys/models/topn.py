"""Row-wise top-n selection with one padding convention for every model.

Result arrays are always (rows, n): item indices int64 padded with -1 and
scores float32 padded with -inf, so callers never special-case short lists
(few items, everything filtered).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

# implicit's topk marks filtered items with -FLT_MAX rather than -inf.
_FILTERED = np.finfo(np.float32).min


def pad_ranked(ids: np.ndarray, scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Mark excluded entries (score -inf / -FLT_MAX / nan) as -1/-inf and pad to n columns."""
    ids = np.asarray(ids, dtype=np.int64).reshape(len(ids), -1)[:, :n]
    scores = np.asarray(scores, dtype=np.float32).reshape(len(ids), -1)[:, :n]
    invalid = _invalid(ids, scores)
    out_ids = np.full((len(ids), n), -1, dtype=np.int64)
    out_scores = np.full((len(ids), n), -np.inf, dtype=np.float32)
    width = ids.shape[1]
    out_ids[:, :width] = np.where(invalid, -1, ids)
    out_scores[:, :width] = np.where(invalid, -np.inf, scores)
    return out_ids, out_scores


def mark_ranked(ids: np.ndarray, scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """`pad_ranked` of one row, 1-d and not padded: the first `n` entries, excluded ones -1/-inf
    (a one-user path's marking, without the 2-d padding)."""
    ids = np.asarray(ids, dtype=np.int64)[:n]
    scores = np.asarray(scores, dtype=np.float32)[:n]
    invalid = _invalid(ids, scores)
    if not invalid.any():
        return ids, scores
    return np.where(invalid, -1, ids), np.where(invalid, np.float32(-np.inf), scores)


def _invalid(ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
    return ~np.isfinite(scores) | (scores <= _FILTERED) | (ids < 0)


def top_n(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Best n columns of each row of a 2-d score matrix, best first; -inf means excluded."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float32))
    k = min(n, scores.shape[1])
    if k == 0:
        return pad_ranked(np.zeros((len(scores), 0)), np.zeros((len(scores), 0)), n)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k < scores.shape[1] else np.tile(
        np.arange(scores.shape[1]), (len(scores), 1)
    )
    rows = np.arange(len(scores))[:, None]  # plain fancy indexing: take_along_axis costs ~15 us more per call
    part_scores = scores[rows, part]
    order = np.argsort(-part_scores, axis=1, kind="stable")
    return pad_ranked(part[rows, order], part_scores[rows, order], n)


# Cells of one dense score block (~32 MB of float32): bounds the memory of models
# that score every candidate column for a block of users (item-item, FM).
BLOCK_CELLS = 1 << 23


def top_n_excluding(
    scores: np.ndarray, n: int, exclude: sp.csr_matrix | None = None, columns: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Top-n of each row of a dense score block, the `exclude` row's items never returned.

    `scores` may cover only some items: its column j is item `columns[j]`
    (default: column j is item j), and the result holds item indices either
    way. `exclude` has one row per score row, over all items. `scores` is
    modified in place.
    """
    if exclude is not None:
        if exclude.shape[0] != len(scores):
            raise ValueError(f"exclude has {exclude.shape[0]} rows for {len(scores)} score rows")
        cols = exclude.indices
        if columns is not None:
            position = np.full(exclude.shape[1], -1, dtype=np.int64)
            position[columns] = np.arange(len(columns))
            cols = position[cols]
        rows = np.repeat(np.arange(len(scores)), np.diff(exclude.indptr))
        inside = cols >= 0
        scores[rows[inside], cols[inside]] = -np.inf
    ids, top = top_n(scores, n)
    if columns is not None:
        ids = np.where(ids >= 0, columns[np.maximum(ids, 0)], -1)
    return ids, top


def block_rows(width: int) -> int:
    """Rows per dense score block of `width` columns (at least one)."""
    return max(1, BLOCK_CELLS // max(width, 1))
