"""The tuning's validation split, carved from the retrain's training part only.

Each user's last `fraction` (20%) of the training part is the target, the
rest is what trials fit on: measured against a global time split of the
training part, this per-user split picked the test-optimal config in 4 of 5
dataset x protocol cells (0.967 x optimal in the fifth) for both a per-user
and a forward-looking test, where the time split held 12-20 users on an
imported MovieLens history and picked 0.87-0.90 x optimal. The gate's holdout
(later than the training part) is never read.

Trials run on a fixed random subsample of users (at least `min_users`, or
`user_share` of them when that is more): on two simulated worlds 10% of the
users always found the same winner as all of them, at a tenth of the cost,
but only once that 10% is large: on the 10k-user simulator 5,000 trial users
picked configs 3% worse on the test than all 10,000 did (search.TuneConfig).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from app.recsys.data.dataset import DAY_S, Dataset, EventWeights, Interactions, build_dataset
from app.recsys.evaluation.evaluate import Holdout, evaluate_on
from app.recsys.evaluation.splits import per_user_last_fraction
from app.recsys.models.registry import ModelSpec


@dataclass
class ValidationSplit:
    """Trial users' training events split into a fit part and a target; datasets cached per weighting."""

    fit_events: Interactions
    target_events: Interactions
    span_days: float  # time span of the whole training part (the recency half-life is relative to it)
    users: int  # trial users
    total_users: int  # users of the training part
    _datasets: dict[str, Dataset] = field(default_factory=dict, repr=False)
    _holdout: Holdout | None = field(default=None, repr=False)

    @classmethod
    def carve(cls, train: Interactions, fraction: float = 0.2, min_users: int = 10_000, user_share: float = 0.1,
              seed: int = 0) -> ValidationSplit:
        """Each trial user's last `fraction` of `train` as the target (see the module doc)."""
        if not 0 < fraction < 1 or not 0 < user_share <= 1 or min_users < 1:
            raise ValueError("need 0 < fraction < 1, 0 < user_share <= 1 and min_users >= 1")
        all_users = np.unique(train.user_id)
        size = min(len(all_users), max(min_users, int(np.ceil(user_share * len(all_users)))))
        chosen = np.sort(np.random.default_rng(seed).choice(all_users, size=size, replace=False))
        fit_events, target = per_user_last_fraction(train.select(np.isin(train.user_id, chosen)), fraction)
        span = (train.max_ts - float(train.ts.min())) / DAY_S if len(train) else 0.0
        return cls(fit_events, target, span, size, len(all_users))

    def dataset(self, weights: EventWeights) -> Dataset:
        """The fit part's matrix under `weights` (built once per weighting)."""
        key = json.dumps(weights.params(), sort_keys=True)  # EventWeights holds a dict: not hashable
        if key not in self._datasets:
            self._datasets[key] = build_dataset(self.fit_events, weights)
        return self._datasets[key]

    @property
    def holdout(self) -> Holdout:
        """Users with a new film in their target, and those films (the same for every searched weighting:
        they all keep the same events, only weighing them differently)."""
        if self._holdout is None:
            self._holdout = Holdout.from_split(self.dataset(EventWeights()), self.target_events)
        return self._holdout

    @property
    def pairs(self) -> int:
        """Stored (user, film) pairs the trials fit on."""
        return self.dataset(EventWeights()).matrix.nnz

    def score(self, spec: ModelSpec, k: int = 10) -> float:
        """NDCG@k of `spec` fitted on the fit part and scored on the target."""
        dataset = self.dataset(spec.weights)
        if not dataset.matrix.nnz or not len(self.holdout):
            return 0.0
        return evaluate_on(spec.build().fit(dataset), dataset, self.holdout, k).metrics[f"ndcg@{k}"]
