"""The two-level model: first-level candidates, features as of a time, a LambdaRank ranker on top.

Time layout of a retrain (docs/ranking.md):

    window:   [ ............ train ............ | holdout ]        the gate's split
    train:    [ ...... stage ...... | labels ]                    `splits.label_split`

1. First-level models fit on `stage`; candidates and features as of the label
   slice's start; labels = the films each user came to in `labels` (new to them).
   The ranker learns on at most `max_train_users` users with a positive candidate.
2. The first-level models are refitted on all of `train` (the gate's holdout
   models), candidates and features are recomputed as of the holdout's start, the
   unchanged ranker ranks them and the result is scored on the holdout, paired with
   the best single model on the same users.
3. If it ships: first level refitted on everything (the final fit), every warm
   user's list ranked as of now and published; the ranker and the film snapshot go
   with the version for request-time ranking (`online`).

Nothing in step 1 reads the label slice except the labels, and nothing reads the
holdout before step 2 scores it.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import scipy.sparse as sp

from app.recsys.data.dataset import Dataset, Interactions
from app.recsys.evaluation.evaluate import relevant_items
from app.recsys.models.als import ALSRecommender
from app.recsys.models.base import META_FILE, MODEL_FILE, Recommender, check_indices
from app.recsys.models.itemitem import ItemItemRecommender
from app.recsys.models.itemknn import ItemKNNRecommender
from app.recsys.ranking.candidates import (POPULAR, RECENT, TRENDING, CandidateSource, Candidates, FactorSource,
                                           ItemItemSource, ItemScoreSource, NeighbourSource, RecommenderSource,
                                           UserBatch, union)
from app.recsys.ranking.features import FilmSnapshot, UserTotals, assemble, feature_names, film_snapshot
from app.recsys.ranking.history import cut_rows, neighbours_of, recent_matrix
from app.recsys.ranking.online import RequestRanker
from app.recsys.ranking.ranker import Ranker, RankerParams
from app.recsys.ranking.recall import source_recall, top_per_row

NAME = "two-level"
REQUEST_FILE = "ranking.npz"


@dataclass(frozen=True)
class TwoLevelConfig:
    """Knobs of the two-level stage (costs: docs/ranking.md)."""

    n_candidates: int = 50  # per source
    max_train_users: int = 4_000  # label users the ranker learns from (a seeded sample)
    neighbours: int = 50  # similar films kept per film for "similar to recent plays"
    item_item_neighbours: int = 100  # an item-item source's weights kept per film (`ItemItemSource`)
    batch_users: int = 2_000  # users ranked at once (memory: ~batch x candidates x features floats)
    label_rule: str = "auto"  # splits.label_split
    label_fraction: float = 0.2
    ranker: RankerParams = field(default_factory=RankerParams)
    predict_threads: int = 1  # offline scoring (publish overlaps it with Redis writes); request time: one
    always_ship: bool = False  # ship it even when not shown better than the best single model (benchmarks)

    def __post_init__(self) -> None:
        if min(self.n_candidates, self.max_train_users, self.neighbours, self.item_item_neighbours, self.batch_users,
               self.predict_threads) < 1:
            raise ValueError("two-level sizes must be >= 1")

    def params(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(eq=False)
class LevelOne:
    """Fitted first-level models on one training matrix, and the features as of that matrix's end."""

    dataset: Dataset  # the training matrix: users/films maps, seen films
    sources: list[CandidateSource]
    user_factors: np.ndarray | None  # the ALS user vectors (rows of `dataset`)
    recent: sp.csr_matrix
    snapshot: FilmSnapshot
    totals: UserTotals
    als: ALSRecommender | None

    @classmethod
    def build(cls, dataset: Dataset, events: Interactions, as_of: float, models: Mapping[str, Recommender],
              genres: sp.csr_matrix | None, config: TwoLevelConfig) -> LevelOne:
        """Sources from fitted `models` (by name: ALS as factors, an item-item model as its top-k weights per
        film, any other through its own top-N), plus popular, trending and similar-to-recent (the similar
        films of the item-kNN model when there is one, else ALS's) from `events` before `as_of`."""
        snapshot = film_snapshot(dataset, events, as_of, genres)
        als = models.get(ALSRecommender.name)
        sources: list[CandidateSource] = []
        weights: dict[str, sp.csr_matrix] = {}  # item-item sources' matrices, by name
        for name, model in models.items():
            if isinstance(model, ALSRecommender):
                sources.append(FactorSource(name, model.item_factors))
            elif isinstance(model, ItemItemRecommender):
                weights[name] = neighbours_of(model, config.item_item_neighbours)
                sources.append(ItemItemSource(name, weights[name]))
            else:
                sources.append(RecommenderSource(name, model))
        sources.append(ItemScoreSource(POPULAR, snapshot.viewers_share))
        sources.append(ItemScoreSource(TRENDING, snapshot.trend))
        similar = models.get(ItemKNNRecommender.name, als)
        if similar is not None:
            wide = weights.get(ItemKNNRecommender.name) if config.neighbours <= config.item_item_neighbours else None
            neighbours = cut_rows(wide, config.neighbours) if wide is not None else neighbours_of(similar,
                                                                                                  config.neighbours)
            sources.append(NeighbourSource(RECENT, neighbours))
        return cls(dataset, sources, None if als is None else als.user_factors, recent_matrix(dataset), snapshot,
                   UserTotals.of(dataset, events, as_of), als)

    @property
    def source_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.sources)

    def batch(self, indices: np.ndarray) -> UserBatch:
        matrix = self.dataset.matrix
        return UserBatch(seen=matrix[indices], vectors=None if self.user_factors is None else self.user_factors[indices],
                         recent=self.recent[indices], indices=indices, matrix=matrix)

    def features(self, indices: np.ndarray, n: int) -> tuple[Candidates, np.ndarray]:
        """Candidates of these users (rows of `dataset`) and their feature matrix, as of the snapshot."""
        batch = self.batch(indices)
        candidates = union(self.sources, batch, n)
        states = self.totals.states(indices, batch.seen, self.snapshot)
        return candidates, assemble(candidates, self.snapshot, states, self.snapshot.as_of)

    def recall(self, indices: np.ndarray, relevant: list[np.ndarray], k: int = 100) -> dict[str, float]:
        """Recall@k of each source and of their union for these users (their relevant film indices)."""
        return source_recall(self.sources, self.batch(indices), relevant, k)


def train_ranker(first: LevelOne, labels: Interactions, config: TwoLevelConfig) -> Ranker:
    """The ranker, taught on `first`'s candidates with the label slice's new films as positives."""
    relevant = relevant_items(first.dataset, labels)
    users = np.flatnonzero([len(r) > 0 for r in relevant])
    if len(users) > config.max_train_users:
        users = np.sort(np.random.default_rng(config.ranker.seed).choice(users, config.max_train_users, replace=False))
    blocks, targets, groups = [], [], []
    for start in range(0, len(users), config.batch_users):
        idx = users[start:start + config.batch_users]
        candidates, features = first.features(idx, config.n_candidates)
        width = np.int64(first.dataset.shape[1])
        rel = [relevant[u] for u in idx]
        rel_keys = np.concatenate([i * width + np.asarray(r, dtype=np.int64) for i, r in enumerate(rel)])
        blocks.append(features)
        targets.append(np.isin(candidates.rows * width + candidates.items, rel_keys).astype(np.int32))
        groups.append(candidates.group_sizes(len(idx)))
    return Ranker.train(np.vstack(blocks), np.concatenate(targets), np.concatenate(groups),
                        feature_names(first.source_names), config.ranker)


class TwoLevelRecommender:
    """First level + ranker behind what evaluation and publishing call of a model (`recommend`,
    `similar_items`, the id maps, `save`): the gate scores it and publish ranks every warm user
    with it like any model. Similar films and fold-in come from its ALS source. It is not refitted
    from a matrix alone (its features need the events and a label slice: `stage.build`), and it
    is read back for serving as the request-time bundle (`online.RequestRanker`)."""

    name = NAME

    def __init__(self, first: LevelOne, ranker: Ranker, config: TwoLevelConfig = TwoLevelConfig()) -> None:
        if list(ranker.features) != feature_names(first.source_names):
            raise ValueError(f"ranker features {ranker.features} do not match the sources {first.source_names}")
        self.first, self.ranker, self.config = first, ranker, config
        self.users, self.items = first.dataset.users, first.dataset.items

    def recommend(self, user_indices: np.ndarray, n: int, seen: sp.csr_matrix | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
        """Top-n by ranker score among each user's candidates; the user's training films are never
        candidates (`seen` must be that matrix: the first level was fitted on it)."""
        users = check_indices(user_indices, len(self.users), "user")
        if seen is not None and seen is not self.first.dataset.matrix and seen.shape != self.first.dataset.shape:
            raise ValueError("the two-level model filters by its own training matrix")
        ids = np.full((len(users), n), -1, dtype=np.int64)
        scores = np.full((len(users), n), -np.inf, dtype=np.float32)
        for start in range(0, len(users), self.config.batch_users):
            idx = users[start:start + self.config.batch_users]
            candidates, features = self.first.features(idx, self.config.n_candidates)
            predicted = self.ranker.predict(features, threads=self.config.predict_threads)
            ids[start:start + len(idx)], scores[start:start + len(idx)] = top_per_row(
                candidates.rows, candidates.items, predicted, len(idx), n)
        return ids, scores

    def similar_items(self, item_indices: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        if self.first.als is None:
            raise RuntimeError("the two-level model has no ALS source to find similar films with")
        return self.first.als.similar_items(item_indices, n)

    @property
    def item_factors(self) -> np.ndarray:
        """Fold-in goes through the ALS source (publish writes these factors for request time)."""
        return self.first.als.item_factors if self.first.als is not None else np.zeros((len(self.items), 0))

    @property
    def regularization(self) -> float:
        return self.first.als.regularization if self.first.als is not None else 0.0

    @property
    def alpha(self) -> float:
        return self.first.als.alpha if self.first.als is not None else 1.0

    @property
    def weight_scale(self) -> float:
        return self.first.als.weight_scale if self.first.als is not None else 1.0

    def params(self) -> dict[str, Any]:
        return {"sources": list(self.first.source_names), **self.config.params()}

    def save(self, directory: Path) -> None:
        """The ALS source (its own model files, under als/), the ranker (LightGBM text + JSON) and the
        request-time bundle (`online.RequestRanker`, npz); meta last, so a folder with meta is complete."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self.first.als is not None:
            self.first.als.save(directory / ALSRecommender.name)
            (directory / REQUEST_FILE).write_bytes(RequestRanker.of(self).pack())
        self.ranker.save(directory)
        self.users.save(arrays := {}, "user")
        self.items.save(arrays, "item")
        np.savez(directory / MODEL_FILE, **arrays)
        (directory / META_FILE).write_text(json.dumps({"name": self.name, "params": self.params()}, indent=2,
                                                       sort_keys=True))

