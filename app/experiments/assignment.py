"""A user's arm: a stable hash of (experiment id, user id), the same in every process.

    seed   = first 8 bytes of BLAKE2b(experiment id), as an unsigned 64-bit int
    h      = intHash64(seed XOR user_id)        (ClickHouse's intHash64:
             murmur3's 64-bit finaliser of x XOR 0x4CF2D2BAAE6DA887)
    u      = (h >> 11) / 2**53                  uniform in [0, 1)
    arm    = challenger if u < share else control

Why this construction: Python's `hash()` is salted per process, so it cannot
be used; BLAKE2b of the id is computed once per experiment; the per-user step
is one 64-bit mix that is cheap per request, vectorises in numpy (wrapping
uint64 arithmetic) and exists in ClickHouse 18.16 as `intHash64`, so the
analysis and the analysts' view can assign arms in SQL with exactly the same
result. The comparison is done on integers (`h >> 11 < threshold`, threshold =
ceil(share * 2**53)), so no float rounding can differ between the three.
"""
from __future__ import annotations

import hashlib
import math
from functools import lru_cache

import numpy as np

CONTROL, CHALLENGER = "control", "challenger"
ARMS = (CONTROL, CHALLENGER)
_MASK = (1 << 64) - 1
_SALT = 0x4CF2D2BAAE6DA887  # ClickHouse IntHash64Impl
_M1, _M2 = 0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53
_BITS = 53


@lru_cache(maxsize=64)
def hash_seed(experiment_id: str) -> int:
    """The experiment's 64-bit seed (BLAKE2b, so identical on every machine and Python)."""
    return int.from_bytes(hashlib.blake2b(experiment_id.encode(), digest_size=8).digest(), "little")


def challenger_threshold(share: float) -> int:
    """Buckets below this integer are in the challenger arm: ceil(share * 2**53)."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be in [0, 1], got {share}")
    return math.ceil(share * (1 << _BITS))


def _int_hash64(x: int) -> int:
    x ^= _SALT
    x ^= x >> 33
    x = (x * _M1) & _MASK
    x ^= x >> 33
    x = (x * _M2) & _MASK
    return x ^ (x >> 33)


def bucket(seed: int, user_id: int) -> int:
    """The user's 53-bit bucket in this experiment (u = bucket / 2**53)."""
    return _int_hash64(seed ^ user_id) >> (64 - _BITS)


def arm_of(seed: int, threshold: int, user_id: int) -> str:
    """The arm of one user: the per-request path (about a microsecond; bench/assignment.py)."""
    return CHALLENGER if _int_hash64(seed ^ user_id) >> (64 - _BITS) < threshold else CONTROL


def buckets(seed: int, user_ids: np.ndarray) -> np.ndarray:
    """`bucket` for an array of user ids at once (uint64 arithmetic wraps like C)."""
    x = np.asarray(user_ids).astype(np.uint64) ^ np.uint64(seed ^ _SALT)
    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(33)
        x *= np.uint64(_M1)
        x ^= x >> np.uint64(33)
        x *= np.uint64(_M2)
        x ^= x >> np.uint64(33)
    return x >> np.uint64(64 - _BITS)


def in_challenger(seed: int, threshold: int, user_ids: np.ndarray) -> np.ndarray:
    """Boolean mask: which of `user_ids` are in the challenger arm."""
    return buckets(seed, user_ids) < np.uint64(threshold)


def challenger_sql(seed: str = "%(seed)s", threshold: str = "%(threshold)s", user_id: str = "user_id") -> str:
    """The same test as a ClickHouse 18.16 expression (1 = challenger); arguments are SQL
    expressions: query parameters by default, columns in the analysts' view."""
    return f"bitShiftRight(intHash64(bitXor(toUInt64({seed}), {user_id})), {64 - _BITS}) < toUInt64({threshold})"
