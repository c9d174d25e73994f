"""Fitting a model spec with the configured backend (Spark: tests/integration/test_spark_parity.py)."""
from __future__ import annotations

import numpy as np

from app.recsys.data.dataset import Interactions, build_dataset
from app.recsys.models.als import ALSRecommender
from app.recsys.models.popularity import PopularRecommender
from app.recsys.models.registry import ModelSpec
from app.recsys.training.fitters import fitter
from app.settings import Settings


def test_implicit_fitter_warm_starts_als_with_the_configured_iterations(planted: Interactions) -> None:
    dataset = build_dataset(planted)
    params = {"factors": 8, "regularization": 0.1, "alpha": 2.0, "iterations": 10}
    spec = ModelSpec.of("als", params)
    settings = Settings.from_env({}).with_overrides(train_backend="implicit")
    with fitter(settings, warm_start_iterations=1) as fit:
        holdout = fit(spec, dataset, None, None, None)
        final = fit(spec, dataset, None, None, holdout)
        popular = fit(ModelSpec.of("popular"), dataset, None, None, holdout)  # no warm start for it: ignored
    cold = ALSRecommender(**params).fit(dataset)
    warm = ALSRecommender(**params).fit(dataset, warm_start=holdout, iterations=1)
    np.testing.assert_allclose(holdout.item_factors, cold.item_factors, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(final.item_factors, warm.item_factors, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(popular.item_scores, PopularRecommender().fit(dataset).item_scores)
