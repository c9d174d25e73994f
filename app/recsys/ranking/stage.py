"""The retrain's two-level stage (also run by bench/quality.py): label split, ranker, holdout model.

    train events ──label_split──▶ stage | labels
    stage ──fit first level──▶ candidates + features as of the labels' start ──▶ ranker (labels)
    train ──first level fitted by the caller (the gate's holdout models)──▶ TwoLevelRecommender

The caller scores the returned model on its holdout (`evaluate_on`), with the same
users as the single models, and decides what ships (`gate.choose`).
"""
from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping

import numpy as np
import scipy.sparse as sp

from app.recsys.data.dataset import Dataset, EventWeights, Interactions, build_dataset
from app.recsys.data.load import Films
from app.recsys.evaluation.evaluate import Holdout
from app.recsys.evaluation.splits import LabelSplit, label_split
from app.recsys.models.base import Recommender
from app.recsys.ranking.twolevel import LevelOne, TwoLevelConfig, TwoLevelRecommender, train_ranker

log = logging.getLogger(__name__)

# Fits the first-level models (by source name) on a training matrix.
FitFirstLevel = Callable[[Dataset], Mapping[str, Recommender]]


@dataclass
class TwoLevelBuild:
    """The ranker, taught on the label slice, on top of the first level of the caller's training part."""

    model: TwoLevelRecommender
    labels: LabelSplit
    timings: dict[str, float] = field(default_factory=dict)

    def record(self) -> dict[str, object]:
        """JSON-ready, for the run record."""
        ranker = self.model.ranker
        return {"label_split": self.labels.as_dict(), "sources": list(self.model.first.source_names),
                "ranker": ranker.stats.as_dict() if ranker.stats else None,
                "importance": dict(list(ranker.importance().items())[:12]), "timings": self.timings}


@dataclass
class Stage:
    """The training part cut for the ranker: the label split and the first level fitted before the labels."""

    labels: LabelSplit
    dataset: Dataset  # the stage part as the first-level matrix
    models: Mapping[str, Recommender]  # first-level models fitted on it
    timings: dict[str, float] = field(default_factory=dict)


@contextlib.contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    """Wall and CPU seconds of a step (`name`, `name_cpu`): the CPU figure holds on a shared machine."""
    started, cpu = time.perf_counter(), time.process_time()
    yield
    timings[name] = round(time.perf_counter() - started, 3)
    timings[f"{name}_cpu"] = round(time.process_time() - cpu, 3)


def fit_stage(train_events: Interactions, weights: EventWeights, fit_first_level: FitFirstLevel, min_users: int,
              max_share: float, config: TwoLevelConfig = TwoLevelConfig()) -> Stage:
    """Cut the label slice from `train_events` and fit the first level on what comes before it.

    The retrain fits its holdout models warm-started from these (they saw less, never the labels),
    so the stage costs a few warm iterations more than single models alone, not a second full fit.
    """
    timings: dict[str, float] = {}
    with _timed(timings, "label_split"):
        labels = label_split(train_events, min_users, max_share, config.label_fraction, config.label_rule,
                             target_users=config.max_train_users)
        dataset = build_dataset(labels.stage, weights)
    log.info("two-level: label slice by %s rule, %d users taught, %d label events", labels.rule, labels.users,
             len(labels.labels))
    with _timed(timings, "stage_fit"):
        models = fit_first_level(dataset)
    return Stage(labels, dataset, models, timings)


def build(stage: Stage, train_events: Interactions, train: Dataset, as_of: float,
          train_models: Mapping[str, Recommender], films: Films,
          config: TwoLevelConfig = TwoLevelConfig()) -> TwoLevelBuild:
    """Teach a ranker on the stage's label slice and put it over `train_models`.

    `train` is `train_events` as the first-level matrix and `train_models` the first-level models
    fitted on it (the gate's holdout models); their features are as of `as_of`.
    """
    timings = dict(stage.timings)
    with _timed(timings, "stage_features"):
        first_stage = LevelOne.build(stage.dataset, stage.labels.stage, stage.labels.as_of, stage.models,
                                     films.genre_matrix(stage.dataset.items)[0], config)
    with _timed(timings, "ranker"):
        ranker = train_ranker(first_stage, stage.labels.labels, config)
    log.info("two-level: ranker of %d trees on %d rows, %d users", ranker.stats.trees, ranker.stats.rows,
             ranker.stats.users)
    with _timed(timings, "first_level"):
        first = LevelOne.build(train, train_events, as_of, train_models, films.genre_matrix(train.items)[0], config)
    return TwoLevelBuild(TwoLevelRecommender(first, ranker, config), stage.labels, timings)


def holdout_recall(model: TwoLevelRecommender, holdout: Holdout, k: int = 100, limit: int = 5_000) -> dict[str, float]:
    """Recall@k of each first-level source and of their union on the holdout (at most `limit` users):
    how much of what users came to the candidates can hold."""
    first = model.first
    index = first.dataset.users.to_index(holdout.users)
    known = np.flatnonzero(index >= 0)[:limit]
    relevant = [first.dataset.items.to_index(holdout.relevant[i]) for i in known]
    relevant = [r[r >= 0] for r in relevant]
    return {key: round(value, 4) for key, value in first.recall(index[known], relevant, k).items()}
