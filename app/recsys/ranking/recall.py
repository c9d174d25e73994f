"""What a batch's candidate pairs give per user row: each source's recall@k, and the top-n by score.

Both work on (row, film) keys = row x films + film, int64, so a batch of thousands of users is a
few sorts instead of a Python loop per user.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from app.recsys.models.topn import pad_ranked

if TYPE_CHECKING:
    from app.recsys.ranking.candidates import CandidateSource, UserBatch


def distinct_keys(keys: np.ndarray) -> np.ndarray:
    """Sorted distinct non-negative keys (sort + drop repeats: several times faster than numpy 2's
    hash-based np.unique on a batch's ~10^6 keys)."""
    keys = np.sort(keys[keys >= 0])
    return keys[np.r_[True, keys[1:] != keys[:-1]]] if len(keys) else keys


def source_recall(sources: Sequence[CandidateSource], batch: UserBatch, relevant: Sequence[np.ndarray],
                  k: int = 100) -> dict[str, float]:
    """Recall@k of each source's top-k and of their union, over the batch rows with a relevant film.

    recall = relevant films proposed / min(|relevant|, k): how much of what users came to
    the candidate set can hold at all (the ceiling of any second level).
    """
    lengths = np.array([len(r) for r in relevant])
    has = lengths > 0
    if not has.any():
        return {}
    width = np.int64(batch.seen.shape[1])
    rel_keys = distinct_keys(np.repeat(np.arange(len(relevant), dtype=np.int64), lengths) * width
                         + np.concatenate([np.asarray(r, dtype=np.int64) for r in relevant]))
    denom = np.minimum(lengths[has], k)
    out, union_keys = {}, []
    for source in sources:
        ids, _ = source.top(batch, k)
        rows = np.repeat(np.arange(len(batch), dtype=np.int64), ids.shape[1]).reshape(ids.shape)
        keys = (rows * width + ids)[ids >= 0]
        union_keys.append(keys)
        out[source.name] = _recall(keys, rel_keys, width, len(relevant), has, denom)
    out["union"] = _recall(distinct_keys(np.concatenate(union_keys)), rel_keys, width, len(relevant), has,
                           np.minimum(lengths[has], k * len(sources)))
    return out


def _recall(keys: np.ndarray, rel_keys: np.ndarray, width: np.int64, n_rows: int, has: np.ndarray,
            denom: np.ndarray) -> float:
    hits = np.bincount((keys[np.isin(keys, rel_keys)] // width).astype(np.int64), minlength=n_rows)
    return float(np.mean(np.minimum(hits[has], denom) / denom))


def top_per_row(rows: np.ndarray, items: np.ndarray, scores: np.ndarray, n_rows: int, n: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """Per batch row, its `n` best items by score, padded -1 / -inf. Pairs come sorted by row then
    item (`Candidates`), and the sort is stable: ties go to the smaller item index."""
    order = np.lexsort((-scores, rows))
    rows, items, scores = rows[order], items[order], scores[order]
    starts = np.searchsorted(rows, np.arange(n_rows))
    rank = np.arange(len(rows)) - starts[rows]
    keep = rank < n
    ids = np.full((n_rows, n), -1, dtype=np.int64)
    out = np.full((n_rows, n), -np.inf, dtype=np.float32)
    ids[rows[keep], rank[keep]] = items[keep]
    out[rows[keep], rank[keep]] = scores[keep]
    return pad_ranked(ids, out, n)
