"""The scaled-out ALS backend: Spark MLlib `ALS(implicitPrefs=True)` fed straight from ClickHouse.

Data path: the driver never collects the events. Each Spark task runs one
ClickHouse query for its hash slice of users (`cityHash64(user_id) % N = i`)
with the event weighting (`EventWeights`, as SQL) and the per-(user, film)
sum pushed down (GROUP BY), so only the confidence matrix's nonzeros leave
ClickHouse, spread over the executors. Only the learned factors come back to
the driver, where they become an `ALSRecommender` aligned with the pipeline's
id maps: evaluation, the gate, publishing and fold-in are shared with the
`implicit` backend.

Executors need this package and clickhouse-driver installed (or shipped with
`--py-files`) and network access to ClickHouse (docs/scaling.md).

Parameters: factors, iterations and alpha are taken from the ALS params as
given (alpha applied to the weights divided by their mean, as in implicit). Regularisation is not: Spark scales `regParam` by each user's/item's
number of ratings (ALS-WR) while implicit's is absolute, so Spark has its own
`reg_param` (default chosen on the simulator data, tests/integration/
test_spark_parity.py). Confidence is `1 + alpha * w` in Spark and `alpha * w`
in implicit: the same weighting up to that constant.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from app.recsys.models.als import ALSRecommender
from app.recsys.data.dataset import DAY_S, EventWeights
from app.recsys.data.idmap import IdMap
from app.recsys.data.load import window_conditions
from app.schema import EVENT_TYPES, NO_RATING, WATCH_EVENT_TYPES
from app.settings import Settings
from app.storage.clickhouse import client

log = logging.getLogger(__name__)

DEFAULT_REG_PARAM = 1.0
INT32_MAX = 2**31 - 1  # MLlib ALS ids are Java ints


class SparkUnavailable(RuntimeError):
    """pyspark is not installed (it is the optional `spark` extra)."""


def weight_sql(weights: EventWeights) -> str:
    """`EventWeights.weights` as a ClickHouse expression over one `interactions` row.

    Kept next to the numpy version's contract: tests/integration/test_spark_parity.py
    checks both give the same per-pair sums on the same events.
    """
    types = ", ".join(f"'{t}'" for t in EVENT_TYPES)
    base = ", ".join(repr(float(x)) for x in weights.base_table())
    watch = ", ".join(f"'{t}'" for t in sorted(WATCH_EVENT_TYPES))
    expr = f"transform(event_type, [{types}], [{base}], 0.)"
    if weights.completion_bonus:
        expr = (f"({expr} + if(event_type IN ({watch}) AND duration_seconds > 0, "
                f"{float(weights.completion_bonus)!r} * least(greatest(watch_seconds / duration_seconds, 0.), 1.), 0.))")
    if weights.rating_scope == "event" and weights.rating_exponent:
        expr = (f"{expr} * if(rating > {NO_RATING!r}, {_rating_factor('rating', weights.rating_exponent)}, 1.)")
    return expr


def pair_weight_sql(weights: EventWeights) -> str:
    """`EventWeights.pair_weights` as an aggregate over one (user, film) group of weighted events
    (`w`, `rating`, `ts`); the query parameter `now` is the data's newest event (for the decay)."""
    expr = "1." if weights.binary else "sum(w)"
    if weights.rating_scope == "pair" and weights.rating_exponent:
        rated = f"rating > {NO_RATING!r}"
        expr = (f"{expr} * if(countIf({rated}) > 0, "
                f"{_rating_factor(f'avgIf(rating, {rated})', weights.rating_exponent)}, 1.)")
    if weights.half_life_days is not None:
        half_life_s = float(weights.half_life_days * DAY_S)
        expr = f"{expr} * exp2(-greatest(%(now)s - toUInt32(max(ts)), 0) / {half_life_s!r})"
    return expr


def _rating_factor(rating: str, exponent: float) -> str:
    return f"pow(least(greatest({rating}, 0.), 10.) / 10., {float(exponent)!r})"


def pairs_query(database: str, weights: EventWeights, since: float | None, until: float | None,
                slices: int, now: float = 0.0) -> tuple[str, dict[str, int]]:
    """SQL of one slice's (user, film, pair weight) rows; parameter `slice` picks the slice.
    `now`: the newest event of the data the driver built its matrix from (the decay's reference)."""
    where, params = window_conditions(since, until)
    where.append("modulo(cityHash64(user_id), %(slices)s) = %(slice)s")
    params["slices"] = slices
    params["now"] = int(now)
    query = f"""
        SELECT user_id, film_id, {pair_weight_sql(weights)} AS weight
        FROM (
            SELECT toInt64(user_id) AS user_id, toInt64(film_id) AS film_id, {weight_sql(weights)} AS w,
                   rating, ts
            FROM {database}.interactions FINAL
            WHERE {' AND '.join(where)}
        )
        WHERE w > 0
        GROUP BY user_id, film_id
    """
    return query, params


def read_slices(settings: Settings, query: str, params: Mapping[str, int],
                slices: Iterable[int]) -> Iterator[tuple[int, int, float]]:
    """Rows of the given slices, streamed (runs on an executor, inside `mapPartitions`)."""
    conn = client(settings)
    try:
        for i in slices:
            for user, film, weight in conn.execute_iter(query, {**params, "slice": i}):
                yield int(user), int(film), float(weight)
    finally:
        conn.disconnect()


class SparkALSTrainer:
    """Fits ALS on Spark; one SparkSession, started at the first fit, stopped by `close()`."""

    def __init__(self, settings: Settings, als: Mapping[str, Any] | None = None,
                 reg_param: float = DEFAULT_REG_PARAM, weights: EventWeights | None = None,
                 slices: int | None = None) -> None:
        self.settings = settings
        self.template = ALSRecommender(**(als or {}))  # validates the params; the artifact carries them
        if reg_param < 0:
            raise ValueError("reg_param must be >= 0")
        if slices is not None and slices < 1:
            raise ValueError("slices must be >= 1")
        self.reg_param = float(reg_param)
        self.weights = weights or EventWeights()
        self.slices = slices
        self._spark: Any = None

    def session(self) -> Any:
        """The SparkSession (quiet logs, modest driver memory, few shuffle partitions)."""
        if self._spark is None:
            self._spark = spark_session(self.settings.spark_master, self.settings.local_dir / "spark-checkpoints")
        return self._spark

    def fit(self, users: IdMap, items: IdMap, since: float | None, until: float | None,
            template: ALSRecommender | None = None, weights: EventWeights | None = None,
            scale: float = 1.0, now: float = 0.0) -> ALSRecommender:
        """ALS on the film events of `[since, until)`; factors placed at `users`/`items` indices.

        `template` and `weights` (default: the trainer's) give the ALS params and
        the event weighting of this fit; `scale` is the weight scale of the
        driver's matrix of the same events (`als.weight_scale`) and `now` its
        newest event. Ids the window has but the maps lack are
        dropped; ids of the maps with no row in Spark's output keep zero factors
        (both mean the caller built its maps from other data than the window).
        """
        template, weights = template or self.template, weights or self.weights
        from pyspark.ml.recommendation import ALS

        spark = self.session()
        started = time.perf_counter()
        slices = self.slices or 2 * spark.sparkContext.defaultParallelism
        self._check_ids()
        query, params = pairs_query(self.settings.clickhouse_database, weights, since, until, slices, now)
        settings = self.settings
        rows = spark.sparkContext.parallelize(range(slices), slices).mapPartitions(
            lambda part: read_slices(settings, query, params, part))
        # Cached and counted first: one ClickHouse pass (ALS reads its input more than once),
        # and the log tells reading time from solving time.
        frame = spark.createDataFrame(rows, "user int, item int, weight float").cache()
        pairs = frame.count()
        read_s = time.perf_counter() - started
        model = ALS(
            rank=template.factors, maxIter=template.iterations, regParam=self.reg_param,
            alpha=template.alpha * scale, implicitPrefs=True, seed=template.random_state,
            userCol="user", itemCol="item", ratingCol="weight", nonnegative=False,
            numUserBlocks=slices, numItemBlocks=slices, intermediateStorageLevel="MEMORY_AND_DISK",
            checkpointInterval=5,
        ).fit(frame)
        user_factors = aligned_factors(model.userFactors.collect(), users, template.factors)
        item_factors = aligned_factors(model.itemFactors.collect(), items, template.factors)
        frame.unpersist()
        log.info("spark ALS on %s: %d pairs (%d users x %d films) read in %.1fs over %d slices, "
                 "fitted in %.1fs (regParam %g)", self.settings.spark_master, pairs, len(users), len(items),
                 read_s, slices, time.perf_counter() - started - read_s, self.reg_param)
        return template.with_factors(users, items, user_factors, item_factors, scale)

    def _check_ids(self) -> None:
        """MLlib needs int ids: fail clearly rather than deep inside a Spark task."""
        conn = client(self.settings)
        try:
            (max_user, max_film), = conn.execute(
                f"SELECT max(user_id), max(film_id) FROM {self.settings.clickhouse_database}.interactions")
        finally:
            conn.disconnect()
        if max(max_user, max_film) > INT32_MAX:
            raise ValueError(f"Spark ALS needs user and film ids <= {INT32_MAX}; "
                             f"found user {max_user}, film {max_film}: use TRAIN_BACKEND=implicit")

    def close(self) -> None:
        if self._spark is not None:
            self._spark.stop()
            self._spark = None

    def __enter__(self) -> "SparkALSTrainer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def aligned_factors(rows: Iterable[Any], ids: IdMap, factors: int) -> np.ndarray:
    """(len(ids), factors) float32 matrix from Spark's (id, features) rows, in `ids` order."""
    rows = list(rows)
    out = np.zeros((len(ids), factors), dtype=np.float32)
    if not rows:
        return out
    index = ids.to_index(np.array([r.id for r in rows], dtype=np.int64))
    known = index >= 0
    out[index[known]] = np.array([r.features for r in rows], dtype=np.float32)[known]
    return out


def spark_session(master: str, checkpoint_dir: Path) -> Any:
    """A SparkSession for `master`; local masters run the workers on this interpreter (the venv).

    ALS grows an RDD lineage with every iteration; without a checkpoint directory
    its `checkpointInterval` does nothing and serialising the lineage can overflow
    the JVM stack (seen here as StackOverflowError in task serialisation).
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise SparkUnavailable(
            "TRAIN_BACKEND=spark needs pyspark: pip install '.[spark]' (the optional extra)") from None
    builder = (SparkSession.builder.master(master).appName("cinerec-als")
               .config("spark.log.level", "WARN").config("spark.ui.showConsoleProgress", "false"))
    if master.startswith("local"):
        # pyspark starts its Python workers from PYSPARK_PYTHON only (default: `python3` on
        # PATH, which lacks the venv's packages); locally they must run this interpreter.
        os.environ["PYSPARK_PYTHON"] = sys.executable
        # Sized for one shared machine; on a cluster, spark-defaults.conf / spark-submit decide.
        builder = (builder.config("spark.driver.memory", "1g").config("spark.sql.shuffle.partitions", "4")
                   .config("spark.ui.enabled", "false").config("spark.driver.extraJavaOptions", "-Xss16m"))
    session = builder.getOrCreate()
    session.sparkContext.setCheckpointDir(str(checkpoint_dir))
    return session
