"""Pure parts of the publisher: the block encoder and version names (Redis parts: tests/integration)."""
from __future__ import annotations

import re
import threading
from typing import Iterator

import numpy as np
import pytest

from app.recsys.training.publish import encode_ranked_rows, new_version, prefetched
from app.storage.redis_keys import decode_ranked, encode_ranked


def _reference(film_ids: np.ndarray, scores: np.ndarray) -> list[tuple[list[int], list[float]]]:
    """Row by row through the shared codec, padding dropped."""
    out = []
    for ids, sc in zip(film_ids, scores):
        keep = ids >= 0
        out.append(decode_ranked(encode_ranked(ids[keep].tolist(), sc[keep].tolist())))
    return out


@pytest.mark.parametrize("max_id", [200, 70_000, 5_000_000_000])  # uint16, uint32, uint64 ids
def test_block_encoding_decodes_like_the_shared_codec(max_id: int) -> None:
    rng = np.random.default_rng(max_id)
    film_ids = rng.integers(1, max_id, size=(60, 40))
    scores = rng.standard_normal((60, 40)).astype(np.float32)
    film_ids[3, 10:] = -1  # short list (fixarray header)
    film_ids[4, 20:] = -1  # 16+ entries (array16 header)
    film_ids[5, :] = -1  # nothing at all
    scores[film_ids < 0] = -np.inf

    decoded = [decode_ranked(raw) for raw in encode_ranked_rows(film_ids, scores)]

    assert decoded == _reference(film_ids, scores)
    assert decoded[5] == ([], [])
    assert len(decoded[3][0]) == 10


def test_block_encoding_rejects_padding_before_real_entries() -> None:
    film_ids = np.array([[5, -1, 7]])
    with pytest.raises(ValueError, match="padding"):
        encode_ranked_rows(film_ids, np.zeros((1, 3)))


def test_block_encoding_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="same 2-d shape"):
        encode_ranked_rows(np.ones((2, 3), dtype=np.int64), np.ones((2, 4)))


def test_versions_sort_by_time_and_are_unique() -> None:
    versions = {new_version() for _ in range(50)}
    assert len(versions) == 50
    assert all(re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{6}", v) for v in versions)


def test_prefetched_yields_every_block_in_order_computing_the_next_one_meanwhile() -> None:
    started = [threading.Event() for _ in range(4)]
    threads = []

    def blocks() -> Iterator[int]:
        for i in range(4):
            started[i].set()
            threads.append(threading.current_thread())
            yield i

    got = []
    for block in prefetched(blocks()):
        if block + 1 < 4:  # without a helper thread nothing would start the next block while we wait
            assert started[block + 1].wait(timeout=60)
        got.append(block)
    assert got == [0, 1, 2, 3]
    assert threading.main_thread() not in threads


def test_prefetched_raises_the_producers_error() -> None:
    def blocks() -> Iterator[int]:
        yield 1
        raise ValueError("top-n failed")

    got = []
    with pytest.raises(ValueError, match="top-n failed"):
        for block in prefetched(blocks()):
            got.append(block)
    assert got == [1]
