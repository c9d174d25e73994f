"""The second level: a LightGBM LambdaRank model over candidate features.

Saved as LightGBM's own text model plus a JSON sidecar (feature names, params,
trees kept): neither can run code when loaded, unlike a pickle. Training is
deterministic for a seed (one thread by default, `deterministic`, row-wise
histograms: the same trees at any thread count), so the same data gives the same ranker, and early stopping on a
held-out fifth of the label users picks the number of trees.

Explanations (`contributions`) are LightGBM's per-feature SHAP values:
what each feature added to a candidate's score, summed per first-level source
(its score and rank together), so `explain=1` can say "similar to recent
plays" or "genre match" rather than a column name.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import lightgbm as lgb
import numpy as np

MODEL_FILE = "ranker.txt"
META_FILE = "ranker.json"
MAX_ROUNDS = 400
EARLY_STOPPING = 40
# Early stopping watches NDCG@30 of the held-out users, not @10: with a few hundred users @10
# is so noisy that it peaked after 7 trees in one of three seeds on ml-latest-small (NDCG 0.133
# vs 0.148-0.150); @30 stopped at 40-90 trees for every seed (docs/ranking.md).
EVAL_AT = 30


@dataclass(frozen=True)
class RankerParams:
    """LightGBM settings (research defaults: lr 0.05, 31 leaves, 50 rows per leaf, NDCG truncation 20)."""

    learning_rate: float = 0.05
    num_leaves: int = 31
    min_data_in_leaf: int = 50
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    truncation_level: int = 20
    # One thread: on a busy 2-core machine OpenMP's second thread spins and made training 5x slower
    # in wall time (ml-latest-small ranker: 18.2 s vs 3.7 s, the same 28 trees).
    threads: int = 1
    seed: int = 0
    es_share: float = 0.2  # label users held out for early stopping

    def lightgbm(self) -> dict[str, Any]:
        return {
            "objective": "lambdarank", "metric": "ndcg", "eval_at": [EVAL_AT],
            "lambdarank_truncation_level": self.truncation_level, "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves, "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction, "bagging_fraction": self.bagging_fraction, "bagging_freq": 1,
            "num_threads": self.threads, "seed": self.seed, "deterministic": True, "force_row_wise": True,
            "verbose": -1,
        }


@dataclass(frozen=True)
class TrainStats:
    """What the ranker learned from (recorded with the run)."""

    rows: int
    users: int
    es_users: int
    positive_share: float
    trees: int

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in self.__dict__.items()}


@dataclass(eq=False)
class Ranker:
    """A trained LambdaRank booster and the feature names it expects, in order."""

    booster: lgb.Booster
    features: list[str]
    params: dict[str, Any] = field(default_factory=dict)
    stats: TrainStats | None = None

    @classmethod
    def train(cls, features: np.ndarray, labels: np.ndarray, groups: np.ndarray, names: Sequence[str],
              params: RankerParams = RankerParams()) -> Ranker:
        """Fit on query groups (one per user, rows in group order); groups without a positive are dropped
        (LambdaRank learns nothing from them). Early stopping on a seeded random `es_share` of the groups."""
        if features.shape != (int(groups.sum()), len(names)) or len(labels) != len(features):
            raise ValueError(f"features {features.shape}, labels {len(labels)}, groups sum {int(groups.sum())} "
                             f"and {len(names)} names do not agree")
        group_of = np.repeat(np.arange(len(groups)), groups)
        positive = np.bincount(group_of, weights=labels > 0, minlength=len(groups)) > 0
        if positive.sum() < 2:
            raise ValueError(f"only {int(positive.sum())} user(s) with a positive candidate: nothing to learn")
        kept = np.flatnonzero(positive)
        rng = np.random.default_rng(params.seed)
        held = np.zeros(len(groups), dtype=bool)
        held[rng.choice(kept, max(1, int(len(kept) * params.es_share)), replace=False)] = True
        train_rows, es_rows = positive[group_of] & ~held[group_of], held[group_of]
        train_set = lgb.Dataset(features[train_rows], labels[train_rows], group=groups[positive & ~held],
                                feature_name=list(names), free_raw_data=True, params={"verbose": -1})
        es_set = lgb.Dataset(features[es_rows], labels[es_rows], group=groups[held], reference=train_set)
        booster = lgb.train(params.lightgbm(), train_set, num_boost_round=MAX_ROUNDS, valid_sets=[es_set],
                            callbacks=[lgb.early_stopping(EARLY_STOPPING, verbose=False)])
        stats = TrainStats(rows=int(train_rows.sum() + es_rows.sum()), users=int(len(kept)), es_users=int(held.sum()),
                           positive_share=float((labels[train_rows | es_rows] > 0).mean()),
                           trees=int(booster.best_iteration or booster.current_iteration()))
        return cls(booster, list(names), params.lightgbm(), stats)

    def predict(self, features: np.ndarray, threads: int = 1) -> np.ndarray:
        """Scores (higher = better) with the early-stopped number of trees (one thread at request time)."""
        self._check(features)
        return self.booster.predict(features, num_iteration=self._trees, num_threads=threads).astype(np.float32)

    def contributions(self, features: np.ndarray) -> np.ndarray:
        """(rows, features) SHAP contribution of each feature to each row's score (the bias column dropped)."""
        self._check(features)
        return self.booster.predict(features, num_iteration=self._trees, pred_contrib=True,
                                    num_threads=1)[:, :-1]

    @property
    def _trees(self) -> int | None:
        return self.stats.trees if self.stats else None

    def _check(self, features: np.ndarray) -> None:
        if features.ndim != 2 or features.shape[1] != len(self.features):
            raise ValueError(f"the ranker expects {len(self.features)} features, got shape {features.shape}")

    def importance(self) -> dict[str, float]:
        """Share of the total split gain per feature, largest first."""
        gain = self.booster.feature_importance("gain", iteration=self._trees)
        total = max(float(gain.sum()), 1e-12)
        return {self.features[j]: round(float(gain[j]) / total, 4) for j in np.argsort(-gain)}

    def to_strings(self) -> tuple[str, str]:
        """(LightGBM text model, JSON sidecar): what `save` writes and what is published to Redis."""
        meta = {"features": self.features, "params": self.params,
                "stats": self.stats.as_dict() if self.stats else None}
        return self.booster.model_to_string(num_iteration=self._trees), json.dumps(meta, sort_keys=True)

    @classmethod
    def from_strings(cls, model: str, meta: str) -> Ranker:
        info = json.loads(meta)
        booster = lgb.Booster(model_str=model)
        if booster.feature_name() != info["features"]:
            raise ValueError("the ranker's model and its feature list disagree")
        stats = TrainStats(**info["stats"]) if info.get("stats") else None
        return cls(booster, info["features"], info.get("params", {}), stats)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        model, meta = self.to_strings()
        (directory / MODEL_FILE).write_text(model)
        (directory / META_FILE).write_text(meta)

    @classmethod
    def load(cls, directory: Path) -> Ranker:
        return cls.from_strings((directory / MODEL_FILE).read_text(), (directory / META_FILE).read_text())
