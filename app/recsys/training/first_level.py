"""The first-level models (the two-level model's candidate generators), fitted on the retrain's
training part and scored on the gate's holdout: each one's recall@100 is recorded with the run.

What `fit_first_level` returns is what the second level builds its candidates
from; ALS (the challenger, already fitted by `evaluate`), Popular and Trending
are passed in rather than fitted twice.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Mapping

import scipy.sparse as sp

from app.recsys.data.dataset import Dataset
from app.recsys.evaluation.evaluate import Holdout, evaluate_on
from app.recsys.models.base import Recommender
from app.recsys.models.fm import FMRecommender
from app.recsys.models.registry import ModelSpec

log = logging.getLogger(__name__)

CANDIDATES = 100  # recall@CANDIDATES: how many of a user's new films a source's top list reaches


@dataclass
class FirstLevel:
    """Fitted first-level models by name, each one's holdout figures, and fit seconds."""

    models: dict[str, Recommender] = field(default_factory=dict)
    figures: dict[str, dict[str, float]] = field(default_factory=dict)

    def record(self) -> dict[str, dict[str, float]]:
        """JSON-ready, the run's `first_level` column: per model recall@100, NDCG@10 and fit seconds."""
        return self.figures


def fit_first_level(dataset: Dataset, specs: Mapping[str, ModelSpec], fitted: Mapping[str, Recommender],
                    genres: sp.csr_matrix | None, holdout: Holdout) -> FirstLevel:
    """Fit `specs` on `dataset` (the FM with the films' `genres`), add the already `fitted` models, and
    score every one on `holdout`: recall@100 (as a candidate source) and NDCG@10 (as a ranker)."""
    out = FirstLevel()
    for name, model in fitted.items():
        out.models[name] = model
        out.figures[name] = {}
    for name, spec in specs.items():
        started = time.perf_counter()
        model = spec.build()
        out.models[name] = model.fit(dataset, genres) if isinstance(model, FMRecommender) else model.fit(dataset)
        out.figures[name] = {"fit_s": round(time.perf_counter() - started, 3)}
    for name, model in out.models.items():
        wide = evaluate_on(model, dataset, holdout, CANDIDATES).metrics
        top = evaluate_on(model, dataset, holdout, 10).metrics
        out.figures[name].update({f"recall@{CANDIDATES}": wide[f"recall@{CANDIDATES}"], "ndcg@10": top["ndcg@10"],
                                  "users": top["users"]})
        log.info("first level %s: recall@%d %.4f, NDCG@10 %.4f", name, CANDIDATES,
                 wide[f"recall@{CANDIDATES}"], top["ndcg@10"])
    return out
