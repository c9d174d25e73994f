"""Bulk insert of validated events into ClickHouse `interactions`.

Columnar on purpose: the loader holds a batch as columns (app.event_columns),
and each column is serialised by numpy in a few whole-array steps
(app/storage/native_block.py). Not the driver's numpy mode: it casts a value
the column cannot hold (e.g. a narrowed column) silently instead of raising,
and the loader relies on the error to dead-letter that record (agents/writer.py).
Idempotency: duplicates inside one batch are dropped here (by event_id);
duplicates across batches (Kafka re-delivery) collapse in the
ReplacingMergeTree and are invisible to readers using FINAL / `interactions_dedup`.
"""
from __future__ import annotations

from typing import Sequence

from clickhouse_driver import Client

import numpy as np

from app.event_columns import EventColumns
from app.events import Event
from app.schema import INTERACTION_COLUMNS
from app.settings import Settings
from app.storage import native_block
from app.storage.clickhouse import client

_INSERT = f"INSERT INTO interactions ({', '.join(INTERACTION_COLUMNS)}) VALUES"


def first_copies(event_ids: Sequence[str]) -> list[int] | None:
    """Indices of the first of each event_id, in order (the loader filters its columns and side
    lists with them); None when every id is unique (the common case, found in one C-level pass)."""
    first = dict(zip(reversed(event_ids), range(len(event_ids) - 1, -1, -1)))
    return None if len(first) == len(event_ids) else sorted(first.values())


def dedup(events: Sequence[Event]) -> list[Event]:
    """Events with a repeated event_id removed (first copy kept, order kept)."""
    keep = first_copies([event.event_id for event in events])
    return list(events) if keep is None else [events[i] for i in keep]


def to_columns(columns: EventColumns) -> list[list]:
    """Column lists in INTERACTION_COLUMNS order (the driver's own insert path)."""
    return [values.tolist() for values in to_arrays(columns).values()]


def to_arrays(columns: EventColumns) -> dict[str, np.ndarray]:
    """The columns as numpy by name, in INTERACTION_COLUMNS order; event types by name, ts as integer
    epoch seconds."""
    out = {name: getattr(columns, name) for name in INTERACTION_COLUMNS}
    out["event_type"] = columns.type_names()
    out["ts"] = np.floor(columns.ts).astype(np.int64)
    return out


def insert_columns(conn: Client, columns: EventColumns) -> int:
    """Insert the rows of `columns` (each event_id once: the caller deduplicates); returns rows sent.
    Each column is serialised by numpy (app/storage/native_block.py), a value the column cannot
    hold refused as the driver refuses it."""
    if not len(columns):
        return 0
    return native_block.insert(conn, _INSERT, to_arrays(columns), lambda: to_columns(columns))


def insert_events(conn: Client, events: Sequence[Event]) -> int:
    """Insert `events` (deduplicated by event_id) into `interactions`; returns rows sent."""
    return insert_columns(conn, EventColumns.from_events(dedup(events)))


def visible_count(conn: Client) -> int:
    """Distinct events readers see (FINAL collapses re-delivered copies)."""
    return conn.execute("SELECT count() FROM interactions FINAL")[0][0]


def count_visible(settings: Settings) -> int:
    """`visible_count` over a connection of its own (pollers: demo, tests)."""
    conn = client(settings)
    try:
        return visible_count(conn)
    finally:
        conn.disconnect()
