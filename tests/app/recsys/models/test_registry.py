import json

import pytest

from app.recsys.data.dataset import EventWeights, build_dataset
from app.recsys.models.registry import (
    MODELS,
    ALSRecommender,
    EASERecommender,
    FMRecommender,
    ItemKNNRecommender,
    ModelSpec,
    PopularRecommender,
    Recommender,
    TrendingRecommender,
    load_model,
)


def test_every_model_follows_the_protocol_and_reloads_by_name(tmp_path, planted):
    dataset = build_dataset(planted)
    models = (ALSRecommender(factors=4, iterations=2), PopularRecommender(window_days=7), TrendingRecommender(),
              EASERecommender(max_items=50), ItemKNNRecommender(neighbours=5), FMRecommender(rank=2, sweeps=4))
    assert {m.name for m in models} == set(MODELS)
    for model in models:
        assert isinstance(model, Recommender)
        model.fit(dataset).save(tmp_path / model.name)
        loaded = load_model(tmp_path / model.name)
        assert type(loaded) is MODELS[model.name] and loaded.params() == model.params()


def test_load_model_needs_a_saved_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="meta.json"):
        load_model(tmp_path)


def test_model_spec_fills_defaults_records_and_comes_back():
    spec = ModelSpec.of("als", {"factors": 8}, EventWeights(rating_exponent=2.0))
    assert spec.params == ALSRecommender(factors=8).params()
    assert spec == ModelSpec.of("als", ALSRecommender(factors=8).params(), EventWeights(rating_exponent=2.0))
    record = spec.record()
    assert record["model"] == "als" and record["als"]["factors"] == 8 and record["weights"]["rating_exponent"] == 2.0
    assert ModelSpec.from_record(json.loads(json.dumps(record))) == spec
    assert isinstance(spec.build(), ALSRecommender) and spec.build().factors == 8


def test_model_spec_reads_records_from_before_the_model_key_and_refuses_unknown_ones():
    old = {"als": ALSRecommender().params(), "weights": EventWeights().params(), "config": {}}
    assert ModelSpec.from_record(old) == ModelSpec.of("als")
    # recorded before normalised ALS and pair-scoped ratings: refitted as it was fitted then
    older = {"als": {k: v for k, v in ALSRecommender().params().items() if k != "normalise"},
             "weights": {k: v for k, v in EventWeights().params().items() if k in ("base", "completion_bonus",
                                                                                  "rating_exponent")}}
    spec = ModelSpec.from_record(older)
    assert spec.params["normalise"] is False and spec.weights.rating_scope == "event"
    assert ModelSpec.from_record({"model": "two-level", "two-level": {}}) is None
    assert ModelSpec.from_record({"model": "als", "als": {"no_such_param": 1}}) is None
    with pytest.raises(ValueError, match="unknown model"):
        ModelSpec.of("two-level")
