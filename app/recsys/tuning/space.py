"""What the retrain's tuning searches, in coordinates that carry over between datasets.

ALS (Optuna TPE over a continuous space):

* `alpha` log-uniform [0.3, 30], on weights divided by their mean (so it is relative);
* `rho` = regularization / alpha, log-uniform [1, 30]: implicit's regularization is
  absolute, but its best ratio to alpha was 6-10 on every dataset and protocol measured,
  while the best alpha itself ranged 0.5-30;
* `factors` in {32, 64, 128} (worth <= 5%; MovieLens preferred 128, the simulators 32);
* `rating_exponent` uniform [0, 4], applied to the whole (user, film) pair;
* `weighting`: the default event weights, or binary (only which films a user met);
* `recency`: no decay, or a half-life of half the training data's time span.

EASE: `regularization` in {100, 300, 1000} (300 won 3 of 4 cells of {30 .. 3000}).

The default point is the neutral middle of the space with rho at its
cross-dataset optimum; it is what `--no-tune` fits and what a first tuned run
tries first.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

from app.recsys.data.dataset import EventWeights
from app.recsys.models.als import DEFAULT_ALPHA, DEFAULT_FACTORS, DEFAULT_ITERATIONS, DEFAULT_REGULARIZATION
from app.recsys.models.ease import EASERecommender
from app.recsys.models.registry import ALSRecommender, ModelSpec

ALPHA = (0.3, 30.0)
RHO = (1.0, 30.0)
FACTORS = (32, 64, 128)
RATING_EXPONENT = (0.0, 4.0)
WEIGHTINGS = ("default", "binary")
RECENCY = ("none", "half")  # half-life = half the training data's time span
RECENCY_SHARE = 0.5
EASE_REGULARIZATIONS = (100.0, 300.0, 1000.0)


@dataclass(frozen=True)
class ALSPoint:
    """One point of the ALS search space; `spec` turns it into a fittable model spec."""

    alpha: float = DEFAULT_ALPHA
    rho: float = DEFAULT_REGULARIZATION / DEFAULT_ALPHA
    factors: int = DEFAULT_FACTORS
    rating_exponent: float = EventWeights().rating_exponent
    weighting: str = "default"
    recency: str = "none"

    @classmethod
    def suggest(cls, trial: Any) -> ALSPoint:
        """The point an Optuna trial proposes."""
        return cls(
            alpha=trial.suggest_float("alpha", *ALPHA, log=True),
            rho=trial.suggest_float("rho", *RHO, log=True),
            factors=trial.suggest_categorical("factors", list(FACTORS)),
            rating_exponent=trial.suggest_float("rating_exponent", *RATING_EXPONENT),
            weighting=trial.suggest_categorical("weighting", list(WEIGHTINGS)),
            recency=trial.suggest_categorical("recency", list(RECENCY)),
        )

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> ALSPoint | None:
        """A recorded point, or None when it is missing or outside this code's space (then the
        next run starts from the defaults rather than from something it cannot propose)."""
        if not isinstance(params, Mapping) or set(params) != {f.name for f in fields(cls)}:
            return None
        try:
            point = cls(**params)
        except TypeError:
            return None
        inside = (ALPHA[0] <= point.alpha <= ALPHA[1] and RHO[0] <= point.rho <= RHO[1]
                  and point.factors in FACTORS and RATING_EXPONENT[0] <= point.rating_exponent <= RATING_EXPONENT[1]
                  and point.weighting in WEIGHTINGS and point.recency in RECENCY)
        return point if inside else None

    def params(self) -> dict[str, Any]:
        """JSON-ready, as Optuna names them (what `enqueue_trial` takes back)."""
        return asdict(self)

    def weights(self, span_days: float) -> EventWeights:
        """The event weighting of this point for training data spanning `span_days`."""
        half_life = RECENCY_SHARE * span_days if self.recency == "half" and span_days > 0 else None
        return EventWeights(rating_exponent=self.rating_exponent, binary=self.weighting == "binary",
                            half_life_days=half_life)

    def spec(self, span_days: float, iterations: int = DEFAULT_ITERATIONS) -> ModelSpec:
        """ALS with this point's params and weighting."""
        als = {"factors": self.factors, "alpha": self.alpha, "regularization": self.rho * self.alpha,
               "iterations": iterations}
        return ModelSpec.of(ALSRecommender.name, als, self.weights(span_days))


def ease_spec(regularization: float, max_items: int) -> ModelSpec:
    """EASE on the binary history (its weighting is irrelevant: it only sees who met which film)."""
    return ModelSpec.of(EASERecommender.name, {"regularization": regularization, "max_items": max_items})
