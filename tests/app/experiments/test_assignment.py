"""Arm assignment: stable across processes, identical in Python and numpy, and
splitting users in the planned proportion. (The SQL twin is checked against the
real ClickHouse in test_analysis.py.) Everything here is deterministic: the
hash has no randomness, so the proportion checks cannot flake."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats as sps

from app.experiments.assignment import (
    CHALLENGER,
    CONTROL,
    arm_of,
    bucket,
    buckets,
    challenger_sql,
    challenger_threshold,
    hash_seed,
    in_challenger,
)


def test_the_mix_is_clickhouse_inthash64() -> None:
    # Known answers read from ClickHouse 18.16: SELECT intHash64(toUInt64(1)),
    # intHash64(bitXor(toUInt64(12345678901234567890), toUInt64(42)))
    assert bucket(0, 1) == 10577349846663553072 >> 11
    assert bucket(12345678901234567890, 42) == 10794441959888791007 >> 11


def test_seed_is_the_same_in_every_process() -> None:
    code = "from app.experiments.assignment import hash_seed; print(hash_seed('exp-1'))"
    seen = {
        subprocess.run(
            [sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": salt}, capture_output=True, text=True, check=True
        ).stdout.strip()
        for salt in ("1", "2", "random")
    }
    assert seen == {str(hash_seed("exp-1"))}
    assert hash_seed("exp-1") != hash_seed("exp-2")


@given(st.lists(st.integers(min_value=1, max_value=2**63 - 1), min_size=1, max_size=50), st.text(min_size=1, max_size=20))
def test_numpy_and_scalar_paths_agree(user_ids: list[int], experiment_id: str) -> None:
    seed = hash_seed(experiment_id)
    vector = buckets(seed, np.array(user_ids, dtype=np.uint64))
    assert vector.tolist() == [bucket(seed, u) for u in user_ids]
    threshold = challenger_threshold(0.3)
    mask = in_challenger(seed, threshold, np.array(user_ids, dtype=np.uint64))
    assert [CHALLENGER if m else CONTROL for m in mask] == [arm_of(seed, threshold, u) for u in user_ids]


@pytest.mark.parametrize("experiment_id", ["exp-a", "exp-b", "20261201-als-vs-popular"])
@pytest.mark.parametrize("share", [0.01, 0.1, 0.5, 0.9])
def test_split_matches_the_share(experiment_id: str, share: float) -> None:
    users = np.arange(1, 200_001)
    n = int(in_challenger(hash_seed(experiment_id), challenger_threshold(share), users).sum())
    # A fair split is Binomial(200000, share): a chi-square p-value this low would mean a biased hash.
    expected = np.array([len(users) * (1 - share), len(users) * share])
    chi2 = (((np.array([len(users) - n, n]) - expected) ** 2) / expected).sum()
    assert sps.chi2.sf(chi2, df=1) > 0.001, (n, expected)


def test_two_experiments_split_users_independently() -> None:
    users = np.arange(1, 100_001)
    a = in_challenger(hash_seed("exp-a"), challenger_threshold(0.5), users)
    b = in_challenger(hash_seed("exp-b"), challenger_threshold(0.5), users)
    table = np.array([[(a & b).sum(), (a & ~b).sum()], [(~a & b).sum(), (~a & ~b).sum()]])
    assert sps.chi2_contingency(table)[1] > 0.001


def test_threshold_edges() -> None:
    users = np.arange(1, 10_001)
    seed = hash_seed("edges")
    assert not in_challenger(seed, challenger_threshold(0.0), users).any()
    assert in_challenger(seed, challenger_threshold(1.0), users).all()
    assert challenger_threshold(0.5) == 2**52
    assert challenger_threshold(0.1) == 900719925474100  # ceil(0.1 * 2**53): 0.1 * 2**53 = 900719925474099.2
    with pytest.raises(ValueError):
        challenger_threshold(1.5)


def test_sql_expression_names_its_inputs() -> None:
    assert challenger_sql() == (
        "bitShiftRight(intHash64(bitXor(toUInt64(%(seed)s), user_id)), 11) < toUInt64(%(threshold)s)"
    )
    assert "bitXor(toUInt64(e.hash_seed), i.user_id)" in challenger_sql("e.hash_seed", "e.threshold", "i.user_id")
