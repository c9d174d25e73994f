"""Recommender code, plain Python (no Faust/Celery imports), by concept:

    data/        interactions as numpy columns, event weights, id maps, loading from ClickHouse
    models/      one module per model behind the `base.Recommender` protocol; `registry` by name
    evaluation/  holdout splits, top-K metrics, evaluation of a model, the publish gate
    training/    the retrain run (`pipeline`) and versioned publishing to Redis (`publish`)
"""
