"""Pure parts of the Spark backend (the ClickHouse and Spark paths: tests/integration/test_spark_parity.py)."""
from __future__ import annotations

from collections import namedtuple

import numpy as np
import pytest

from app.recsys.data.dataset import EventWeights
from app.recsys.data.idmap import IdMap
from app.recsys.models.spark_als import SparkALSTrainer, aligned_factors, pair_weight_sql, pairs_query, weight_sql
from app.settings import Settings

Row = namedtuple("Row", "id features")


def test_aligned_factors_follow_the_id_map_and_zero_the_missing() -> None:
    ids = IdMap.from_ids([10, 20, 30])
    rows = [Row(30, [3.0, 3.5]), Row(10, [1.0, 1.5]), Row(99, [9.0, 9.0])]  # 99: not in the map, 20: no row

    out = aligned_factors(rows, ids, 2)

    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[1.0, 1.5], [0.0, 0.0], [3.0, 3.5]])


def test_aligned_factors_of_nothing_are_zeros() -> None:
    assert aligned_factors([], IdMap.from_ids([1, 2]), 3).shape == (2, 3)


def test_weight_sql_leaves_out_switched_off_terms() -> None:
    full = weight_sql(EventWeights(rating_scope="event"))
    plain = weight_sql(EventWeights(completion_bonus=0.0, rating_exponent=0.0))
    assert "duration_seconds" in full and "rating" in full
    assert "duration_seconds" not in plain and "rating" not in plain
    assert "rating" not in weight_sql(EventWeights())  # the pair scope rates the group, not the event


def test_pair_weight_sql_follows_the_pair_steps() -> None:
    assert pair_weight_sql(EventWeights(rating_exponent=0.0)) == "sum(w)"
    rated = pair_weight_sql(EventWeights(rating_exponent=2.0))
    assert rated.startswith("sum(w) * if(countIf(rating > 0.0) > 0") and "avgIf(rating" in rated
    decayed = pair_weight_sql(EventWeights(binary=True, rating_exponent=0.0, half_life_days=2.0))
    assert decayed.startswith("1. * exp2(") and "%(now)s" in decayed and "172800.0" in decayed


def test_pairs_query_slices_by_user_hash_within_the_window() -> None:
    query, params = pairs_query("db", EventWeights(), since=100.5, until=200.0, slices=4)
    assert "modulo(cityHash64(user_id), %(slices)s) = %(slice)s" in query
    assert "GROUP BY user_id, film_id" in query and "FROM db.interactions FINAL" in query
    assert params == {"since": 101, "until": 200, "slices": 4, "now": 0}  # whole seconds: `since` rounds up


@pytest.mark.parametrize("kwargs", [{"reg_param": -1.0}, {"slices": 0}, {"als": {"factors": 0}}])
def test_trainer_rejects_bad_parameters(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        SparkALSTrainer(Settings.from_env({}), **kwargs)
