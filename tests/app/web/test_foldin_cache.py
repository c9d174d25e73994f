"""Fold-in ranker of the web: same answers as the model, computed once per input."""
from __future__ import annotations

from collections import Counter

import numpy as np

from app.recsys.models.foldin import pack_factors, unpack_factors
from app.recsys.data.idmap import IdMap
from app.web.foldin_cache import FoldInRanker, load_ranker
from tests.integration.web_support import HandModel


def packed(seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    return pack_factors(HandModel(IdMap(np.arange(10, 60)), rng.normal(size=(50, 8)).astype(np.float32)))


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


def test_a_miss_equals_the_model_on_many_random_inputs() -> None:
    """The Woodbury solve and the threshold selection give the model's answer (ids, and scores to
    float32 rounding) whatever the input: repeats, unknown films, lists longer than the catalog."""
    rng = np.random.default_rng(3)
    model = HandModel(IdMap(np.arange(1, 601)), rng.normal(size=(600, 16)).astype(np.float32))
    ranker = load_ranker(pack_factors(model))
    reference = unpack_factors(pack_factors(model))
    assert ranker is not None
    for case in range(300):
        recent = tuple(rng.integers(1, 620, size=int(rng.integers(1, 12))).tolist())  # ids > 600: unknown films
        limit = int(rng.choice([1, 5, 10, 100, 700]))
        counts = Counter(recent)
        film_ids, weights = list(counts), [float(c) for c in counts.values()]
        expected_ids, expected_scores = reference.recommend(np.array(film_ids), np.array(weights), limit)
        ids, scores = ranker.top(recent, limit)
        assert ids == expected_ids.tolist(), (case, recent, limit)
        np.testing.assert_allclose(scores, expected_scores, rtol=1e-4, atol=1e-5)
