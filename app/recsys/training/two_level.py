"""The retrain's two-level challenger (docs/ranking.md): its first-level sources, the label-slice stage,
the challenger scored on the gate's holdout, and the shipped model over the final first level.

The first level is ALS (the challenger spec) and item-kNN, a source through its
top-k similarities per film (`candidates.ItemItemSource`: the user's whole
history x that matrix) offline and at request time alike; its neighbours also
feed "similar to recent plays". Why item-kNN and not EASE, although EASE is
often the better single model: as a source EASE made the two-level model WORSE
on MovieLens (docs/ranking.md, "Item-item source"), in its exact form (its own
top-N) as in a top-k cut of B; item-kNN made it better, and its matrix is
sparse by nature (EASE's B is dense: 100 MB at 5,000 films, too big for the
request-time bundle). Each step fits or reuses them at the same three cuts of
time as ALS:

    stage   fitted on the part before the label slice (both, `fit_stage`)
    holdout the gate's holdout models: ALS from `evaluate`, item-kNN from the first-level
            stage when it fitted it (no second fit)
    final   refitted on everything when the two-level model ships

The FM is not a source: a second fit on the stage part (~13 s at 5M events, on
2,000 users) would take the retrain past 3x today's, and a newcomer has no FM
vector at request time (no fold-in in the bundle): its features would be NaN
there and scores offline, a train/serve skew (docs/ranking.md).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from app.recsys.data.dataset import Dataset, EventWeights, Interactions
from app.recsys.data.load import Films
from app.recsys.evaluation.evaluate import Evaluation, Holdout, evaluate_on
from app.recsys.models.base import Recommender
from app.recsys.models.itemknn import ItemKNNRecommender
from app.recsys.models.registry import ModelSpec
from app.recsys.ranking import stage as two_level_stage
from app.recsys.ranking.twolevel import NAME, LevelOne, TwoLevelConfig, TwoLevelRecommender

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sources:
    """The first-level specs of the two-level model, by source name (ALS first: the ranker's feature order)."""

    specs: Mapping[str, ModelSpec]

    @classmethod
    def of(cls, als: ModelSpec) -> Sources:
        """ALS (the challenger's spec) and item-kNN with its default neighbours (the first level's)."""
        return cls({als.name: als, ItemKNNRecommender.name: ModelSpec.of(ItemKNNRecommender.name)})

    def fit(self, dataset: Dataset, fitted: Mapping[str, Recommender] | None = None) -> dict[str, Recommender]:
        """Every source fitted on `dataset`, taking those already `fitted` on it as they are."""
        fitted = fitted or {}
        return {name: fitted.get(name) or spec.build().fit(dataset) for name, spec in self.specs.items()}


@dataclass(frozen=True)
class TwoLevel:
    """The two-level challenger: built on the holdout models and scored on the same holdout."""

    built: two_level_stage.TwoLevelBuild
    evaluation: Evaluation
    recall: dict[str, float]
    sources: Sources


def fit_stage(sources: Sources, train_events: Interactions, weights: EventWeights, min_users: int,
              max_share: float, config: TwoLevelConfig) -> two_level_stage.Stage:
    """The label slice of the train part and every source fitted before it (raises ValueError when
    the slice cannot be cut)."""
    return two_level_stage.fit_stage(train_events, weights, sources.fit, min_users, max_share, config)


def challenger(sources: Sources, stage: two_level_stage.Stage, train_events: Interactions, train: Dataset,
               until: float, fitted: Mapping[str, Recommender], holdout: Holdout, films: Films, k: int,
               config: TwoLevelConfig) -> TwoLevel:
    """A ranker taught on the stage's labels over the holdout models (`fitted` reused: ALS from the
    evaluation, the item-item model from the first-level stage), scored on `holdout`. Raises
    ValueError when the label slice gives nothing to learn from."""
    built = two_level_stage.build(stage, train_events, train, until, sources.fit(train, fitted), films, config)
    evaluation = evaluate_on(built.model, train, holdout, k)
    return TwoLevel(built, evaluation, two_level_stage.holdout_recall(built.model, holdout), sources)


def final(two: TwoLevel, als: Recommender, full: Dataset, interactions: Interactions, films: Films,
          config: TwoLevelConfig) -> TwoLevelRecommender:
    """The shipped two-level model: the gate's ranker over the first level refitted on everything
    (ALS as the caller fitted it, warm), features as of now."""
    models = two.sources.fit(full, {als.name: als})
    first = LevelOne.build(full, interactions, full.now + 1.0, models, films.genre_matrix(full.items)[0], config)
    return TwoLevelRecommender(first, two.built.model.ranker, config)


def served_ndcg(scores_served: np.ndarray | None, two: TwoLevel | None, served_meta: dict | None
                ) -> np.ndarray | None:
    """Per-user NDCG of the served model's kind on this holdout: a served two-level model is judged
    by this run's two-level model (its ranker is not refitted a second time)."""
    if served_meta is not None and served_meta.get("params", {}).get("model") == NAME:
        return two.evaluation.ndcg if two else None
    return scores_served
