"""The ALS fit of the configured backend (Spark: tests/integration/test_spark_parity.py)."""
from __future__ import annotations

import numpy as np

from app.recsys.data.dataset import Interactions, build_dataset
from app.recsys.models.als import ALSRecommender
from app.recsys.training.fitters import als_fitter
from app.settings import Settings


def test_implicit_fitter_warm_starts_the_final_fit_with_the_configured_iterations(planted: Interactions) -> None:
    dataset = build_dataset(planted)
    params = {"factors": 8, "regularization": 0.1, "alpha": 2.0, "iterations": 10}
    settings = Settings.from_env({}).with_overrides(train_backend="implicit")
    with als_fitter(settings, params, warm_start_iterations=1) as fit:
        holdout = fit(dataset, None, None, None)
        final = fit(dataset, None, None, holdout)
    cold = ALSRecommender(**params).fit(dataset)
    warm = ALSRecommender(**params).fit(dataset, warm_start=holdout, iterations=1)
    np.testing.assert_allclose(holdout.item_factors, cold.item_factors, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(final.item_factors, warm.item_factors, rtol=1e-5, atol=1e-6)
