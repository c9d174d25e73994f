"""The recommender models, one import point (implementations live in als.py and popularity.py)."""
from __future__ import annotations

from pathlib import Path

from app.recsys.models.als import ALSRecommender
from app.recsys.models.base import Recommender, read_meta
from app.recsys.models.popularity import PopularRecommender, TrendingRecommender

MODELS: dict[str, type] = {cls.name: cls for cls in (ALSRecommender, PopularRecommender, TrendingRecommender)}


def load_model(directory: Path) -> Recommender:
    """Load whichever model was saved in `directory` (by the name in its meta.json)."""
    name = read_meta(directory)["name"]
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r} in {directory}; known: {sorted(MODELS)}")
    return MODELS[name].load(directory)


__all__ = ["ALSRecommender", "MODELS", "PopularRecommender", "Recommender", "TrendingRecommender", "load_model"]
