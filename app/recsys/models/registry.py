"""The recommender models by name, and `ModelSpec`: which model, with which params, on which weighting."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from app.recsys.data.dataset import EventWeights
from app.recsys.models.als import ALSRecommender, recorded_params
from app.recsys.models.base import Recommender, read_meta
from app.recsys.models.ease import EASERecommender
from app.recsys.models.fm import FMRecommender
from app.recsys.models.itemknn import ItemKNNRecommender
from app.recsys.models.popularity import PopularRecommender, TrendingRecommender

MODELS: dict[str, type] = {cls.name: cls for cls in (
    ALSRecommender, PopularRecommender, TrendingRecommender, EASERecommender, ItemKNNRecommender, FMRecommender)}


def load_model(directory: Path) -> Recommender:
    """Load whichever model was saved in `directory` (by the name in its meta.json)."""
    name = read_meta(directory)["name"]
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r} in {directory}; known: {sorted(MODELS)}")
    return MODELS[name].load(directory)


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to fit a model again: registered name, full params, event weighting.

    Recorded with each run and version (`record()`), so a later run can refit
    the served model on its own holdout and compare like with like.
    """

    name: str
    params: Mapping[str, Any]
    weights: EventWeights = field(default_factory=EventWeights)

    def __post_init__(self) -> None:
        if self.name not in MODELS:
            raise ValueError(f"unknown model {self.name!r}; known: {sorted(MODELS)}")

    @classmethod
    def of(cls, name: str, params: Mapping[str, Any] | None = None, weights: EventWeights | None = None) -> ModelSpec:
        """A spec with the model's defaults filled in (so equal fits compare equal)."""
        if name not in MODELS:
            raise ValueError(f"unknown model {name!r}; known: {sorted(MODELS)}")
        return cls(name, MODELS[name](**(params or {})).params(), weights or EventWeights())

    def build(self) -> Recommender:
        """An unfitted model of this spec."""
        return MODELS[self.name](**self.params)

    def record(self) -> dict[str, Any]:
        """JSON-ready: `{"model": name, name: params, "weights": ...}` (the run's `params` layout)."""
        return {"model": self.name, self.name: dict(self.params), "weights": self.weights.params()}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ModelSpec | None:
        """The spec `record()` wrote; versions recorded before the `model` key were ALS.
        None when the record names no model this code knows (it cannot be refitted)."""
        name = record.get("model", ALSRecommender.name)
        if name not in MODELS or not isinstance(record.get(name), Mapping):
            return None
        params = recorded_params(record[name]) if name == ALSRecommender.name else record[name]
        try:
            return cls.of(name, params, EventWeights.from_params(record.get("weights", {})))
        except (TypeError, ValueError):  # params of another code version
            return None


__all__ = ["ALSRecommender", "EASERecommender", "FMRecommender", "ItemKNNRecommender", "MODELS", "ModelSpec",
           "PopularRecommender", "Recommender", "TrendingRecommender", "load_model"]
