"""Fold-in ranker of the web: same answers as the model, computed once per input."""
from __future__ import annotations

import numpy as np

from app.recsys.models.foldin import pack_factors, unpack_factors
from app.recsys.data.idmap import IdMap
from app.web.foldin_cache import FoldInRanker, confidences, load_ranker
from tests.integration.web_support import HandModel


def packed(seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    return pack_factors(HandModel(IdMap(np.arange(10, 60)), rng.normal(size=(50, 8)).astype(np.float32)))


def test_confidences_count_repeated_watches() -> None:
    assert confidences([4, 9, 4, 4]) == ([4, 9], [3.0, 1.0])
    assert confidences([]) == ([], [])


def test_ranker_answers_like_the_model_and_caches_per_input() -> None:
    ranker = load_ranker(packed())
    assert isinstance(ranker, FoldInRanker)
    model = unpack_factors(packed())
    expected_ids, expected_scores = model.recommend(np.array([12, 30]), np.array([2.0, 1.0]), 5, np.array([12, 30]))
    ids, scores = ranker.top((12, 30, 12), 5)
    assert ids == expected_ids.tolist()
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-5)
    assert not {12, 30} & set(ids)
    assert ranker.top((12, 30, 12), 5) is ranker.top((12, 30, 12), 5)
    info = ranker.top.cache_info()
    assert (info.misses, info.hits) == (1, 2)


def test_missing_or_broken_factors_disable_foldin() -> None:
    assert load_ranker(None) is None
    assert load_ranker(b"") is None
    assert load_ranker(b"not an npz") is None
