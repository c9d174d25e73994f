"""How a model spec is fitted under TRAIN_BACKEND: ALS by `implicit` on the loaded matrix, or by
Spark reading the same window from ClickHouse itself (app.recsys.models.spark_als); any other
model in-process. The same model type either way."""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator

from app.recsys.data.dataset import Dataset
from app.recsys.models.als import ALSRecommender, weight_scale
from app.recsys.models.base import Recommender
from app.recsys.models.registry import ModelSpec
from app.settings import Settings

# (spec, dataset, since, until, warm start) -> the spec's model fitted on the events of [since, until)
# that `dataset` holds (built with the spec's weights), starting from the warm model's factors when
# the backend can (implicit ALS; Spark ignores it).
Fit = Callable[[ModelSpec, Dataset, float | None, float | None, Recommender | None], Recommender]


@contextlib.contextmanager
def fitter(settings: Settings, warm_start_iterations: int | None) -> Iterator[Fit]:
    """The fit function of the configured backend (a Spark session lives as long as the context)."""

    def in_process(spec: ModelSpec, dataset: Dataset, since: float | None, until: float | None,
                   warm: Recommender | None) -> Recommender:
        model = spec.build()
        if isinstance(model, ALSRecommender) and isinstance(warm, ALSRecommender):
            return model.fit(dataset, warm_start=warm, iterations=warm_start_iterations)
        return model.fit(dataset)

    if settings.train_backend != "spark":
        yield in_process
        return
    from app.recsys.models.spark_als import SparkALSTrainer

    with SparkALSTrainer(settings) as trainer:
        def on_spark(spec: ModelSpec, dataset: Dataset, since: float | None, until: float | None,
                     warm: Recommender | None) -> Recommender:
            if spec.name != ALSRecommender.name:
                return in_process(spec, dataset, since, until, warm)
            template = spec.build()
            return trainer.fit(dataset.users, dataset.items, since, until, template, spec.weights,
                               weight_scale(dataset.matrix, template.normalise), dataset.now)

        yield on_spark
