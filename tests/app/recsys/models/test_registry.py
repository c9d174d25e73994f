import pytest

from app.recsys.data.dataset import build_dataset
from app.recsys.models.registry import MODELS, ALSRecommender, PopularRecommender, Recommender, TrendingRecommender, load_model


def test_every_model_follows_the_protocol_and_reloads_by_name(tmp_path, planted):
    dataset = build_dataset(planted)
    for model in (ALSRecommender(factors=4, iterations=2), PopularRecommender(window_days=7), TrendingRecommender()):
        assert isinstance(model, Recommender)
        model.fit(dataset).save(tmp_path / model.name)
        loaded = load_model(tmp_path / model.name)
        assert type(loaded) is MODELS[model.name] and loaded.params() == model.params()


def test_load_model_needs_a_saved_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="meta.json"):
        load_model(tmp_path)
