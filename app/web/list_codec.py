"""Ranked-list values (msgpack `[[film ids], [scores]]`, app.storage.redis_keys) decoded many at a time.

The publisher's block encoder (`publish.encode_ranked_rows`) writes every list
of a block with one fixed layout: ids of one width (uint16/32/64), scores as
float64. Equally long values of that layout are parsed as numpy records in
one go, ~100x faster than msgpack value by value; anything else (lists
written by `encode_ranked`, with the smallest int encodings) goes through msgpack.
"""
from __future__ import annotations

import collections

import numpy as np

from app.storage import redis_keys

# Ids of a list are written with one fixed width per block (publish.encode_ranked_rows).
_ID_WIDTHS = {0xCD: 2, 0xCE: 4, 0xCF: 8}


def _fixed_layout(length: int, width: int) -> tuple[int, np.dtype] | None:
    """(entries, record dtype) of a `length`-byte value from the block encoder with ids of `width` bytes."""
    for header in (1, 3):
        n, rest = divmod(length - 1 - 2 * header, 10 + width)
        if rest or n < 0 or (header == 1) != (n < 16):
            continue
        id_type = {2: ">u2", 4: ">u4", 8: ">u8"}[width]
        return n, np.dtype([
            ("outer", "u1"), ("ids_header", "u1", (header,)), ("ids", [("m", "u1"), ("v", id_type)], (n,)),
            ("scores_header", "u1", (header,)), ("scores", [("m", "u1"), ("v", ">f8")], (n,)),
        ])
    return None


def _header(n: int) -> np.ndarray:
    return np.frombuffer(bytes([0x90 | n]) if n < 16 else b"\xdc" + n.to_bytes(2, "big"), dtype="u1")


def _decode_fixed(values: list[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Equally long values decoded at once when they all have one block-encoder layout, else None."""
    length = len(values[0])
    for marker, width in _ID_WIDTHS.items():
        layout = _fixed_layout(length, width)
        if layout is None:
            continue
        n, record = layout
        block = np.frombuffer(b"".join(values), dtype=record)
        header = _header(n)
        ok = (
            (block["outer"] == 0x92).all()
            and (block["ids_header"] == header).all() and (block["scores_header"] == header).all()
            and (block["ids"]["m"] == marker).all() and (block["scores"]["m"] == 0xCB).all()
        )
        if ok:
            return np.full(len(values), n, dtype=np.int64), block["ids"]["v"].astype(np.int64).ravel(), \
                block["scores"]["v"].astype(np.float64).ravel()
    return None


def decode_values(values: list[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(order, entries per value, film ids end to end, scores end to end) of ranked-list values;
    `order` gives the input position of each decoded value (they come grouped by byte length).

    Values from the publisher's block encoder are parsed as numpy records, a
    group of equally long values at a time (~100x faster than msgpack per
    value); anything else (Python-encoded lists) goes through msgpack.
    """
    by_size: dict[int, list[int]] = collections.defaultdict(list)
    for i, value in enumerate(values):
        by_size[len(value)].append(i)
    order: list[np.ndarray] = []
    lengths: list[np.ndarray] = []
    films: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    for rows in by_size.values():
        fixed = _decode_fixed([values[i] for i in rows])
        if fixed is None:
            decoded = [redis_keys.decode_ranked(values[i]) for i in rows]
            fixed = (np.array([len(ids) for ids, _ in decoded], dtype=np.int64),
                     np.array([f for ids, _ in decoded for f in ids], dtype=np.int64),
                     np.array([s for _, row in decoded for s in row], dtype=np.float64))
        order.append(np.asarray(rows, dtype=np.int64))
        lengths.append(fixed[0])
        films.append(fixed[1])
        scores.append(fixed[2])
    if not order:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return np.concatenate(order), np.concatenate(lengths), np.concatenate(films), np.concatenate(scores)
