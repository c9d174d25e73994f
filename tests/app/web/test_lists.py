"""Compacted lists: decoded from any ranked-list value, read back exactly as Redis holds them."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import given, settings, strategies as st

from app.recsys.training.publish import encode_ranked_rows
from app.storage import redis_keys
from app.web.list_codec import decode_values
from app.web.lists import CompactLists, HotLists, ListArrays, write_lists


def compacted(folder: Path, owners: list[int], values: list[bytes]) -> CompactLists:
    order, lengths, films, scores = decode_values(values)
    return CompactLists(write_lists(folder, "users", np.asarray(owners, dtype=np.int64)[order], lengths, films, scores))


rows = st.integers(0, 40).flatmap(lambda n: st.tuples(
    st.lists(st.integers(1, 2**40), min_size=n, max_size=n),
    st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=n, max_size=n),
))


@settings(max_examples=60, deadline=None)
@given(st.lists(rows, min_size=1, max_size=8), st.booleans(), st.booleans())
def test_every_list_reads_back_as_decode_ranked_gives_it(lists: list, block: bool, sparse: bool) -> None:
    """Block-encoded values (one fixed width per block) and Python-encoded ones, any scores:
    what the web reads equals `decode_ranked` of the stored value, float for float."""
    values = []
    for ids, scores in lists:
        if block and ids:
            values += encode_ranked_rows(np.array([ids]), np.array([scores]))
        else:
            values.append(redis_keys.encode_ranked(ids, scores))
    owners = [(i * 1_000_003 if sparse else i) + 1 for i in range(len(values))]
    with tempfile.TemporaryDirectory() as folder:
        check(compacted(Path(folder), owners, values), owners, values)


def check(found: CompactLists, owners: list[int], values: list[bytes]) -> None:
    for owner, value in zip(owners, values):
        expected = redis_keys.decode_ranked(value)
        assert found.get(owner, 10_000) == expected
        assert found.get(owner, 3) == (expected[0][:3], expected[1][:3])
    assert found.get(max(owners) + 1, 5) is None and found.get(0, 5) is None


def test_five_place_scores_are_kept_as_integers_and_others_as_float64(tmp_path: Path) -> None:
    ids = np.array([3, 2, 1])
    five = write_lists(tmp_path, "a", np.array([1]), np.array([3]), ids, np.round(np.array([0.12345, -3.5, 21000.00001]), 5))
    assert five.scores.dtype == np.int32 and five.films.dtype == np.int32
    assert CompactLists(five).get(1, 5) == ([3, 2, 1], [0.12345, -3.5, 21000.00001])
    other = write_lists(tmp_path, "b", np.array([1]), np.array([3]), ids, np.array([0.1234567, 1.0, 2.0]))
    assert other.scores.dtype == np.float64
    huge = write_lists(tmp_path, "c", np.array([1]), np.array([1]), np.array([2**40]), np.array([1e9]))
    assert huge.scores.dtype == np.float64 and huge.films.dtype == np.int64
    assert CompactLists(huge).get(1, 5) == ([2**40], [1e9])


def test_arrays_are_memory_mapped_from_their_files(tmp_path: Path) -> None:
    values = encode_ranked_rows(np.array([[5, 6], [7, 8]]), np.array([[0.5, 0.25], [2.0, 1.0]]))
    order, lengths, films, scores = decode_values(values)
    arrays = write_lists(tmp_path, "users", np.array([20, 10])[order], lengths, films, scores)
    loaded = ListArrays.load(tmp_path, "users")
    assert isinstance(loaded.films, np.memmap) and isinstance(loaded.owners, np.memmap)
    assert CompactLists(loaded).get(10, 5) == ([7, 8], [2.0, 1.0]) and CompactLists(loaded).get(20, 1) == ([5], [0.5])
    assert loaded.nbytes == arrays.nbytes == 4 * 8 + 2 * 20


def test_hot_lists_keep_the_most_recent_users_within_their_bytes() -> None:
    hot = HotLists(max_bytes=3 * (10 + HotLists.ENTRY_OVERHEAD))
    for user in (1, 2, 3):
        hot.remember(user, b"x" * 10)
    assert hot.raw(1) == b"x" * 10  # 1 is now the most recent
    hot.remember(4, None)  # no list: remembered as b""
    assert hot.raw(2) is None and hot.raw(4) == b"" and hot.raw(1) is not None
    assert hot.nbytes <= hot.max_bytes
    off = HotLists(0)
    off.remember(1, b"x")
    assert off.raw(1) is None and len(off) == 0
