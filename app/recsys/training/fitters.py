"""How ALS is fitted under TRAIN_BACKEND: `implicit` on the loaded matrix, or Spark reading
the same window from ClickHouse itself (app.recsys.models.spark_als); the same model type either way."""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Mapping

from app.recsys.data.dataset import Dataset
from app.recsys.models.als import ALSRecommender
from app.settings import Settings

# (dataset, since, until, warm start) -> ALS fitted on the events of [since, until) that `dataset`
# holds, starting from the given model's factors when the backend can (implicit; Spark ignores it).
FitALS = Callable[[Dataset, float | None, float | None, ALSRecommender | None], ALSRecommender]


@contextlib.contextmanager
def als_fitter(settings: Settings, als: Mapping[str, Any], warm_start_iterations: int | None) -> Iterator[FitALS]:
    """The fit function of the configured backend (a Spark session lives as long as the context)."""
    if settings.train_backend != "spark":
        yield lambda dataset, since, until, warm: ALSRecommender(**als).fit(
            dataset, warm_start=warm, iterations=warm_start_iterations if warm else None)
        return
    from app.recsys.models.spark_als import SparkALSTrainer

    with SparkALSTrainer(settings, als) as trainer:
        yield lambda dataset, since, until, warm: trainer.fit(dataset.users, dataset.items, since, until)
