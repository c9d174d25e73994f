"""Bulk insert of validated events into ClickHouse `interactions`.

Columnar on purpose: transposing the `Event` tuples (already in column order,
app.schema) is one `zip`, and the driver then writes each column in one go,
which is several times faster than row-wise inserts on the loader's hot path.
Idempotency: duplicates inside one batch are dropped here (by event_id);
duplicates across batches (Kafka re-delivery) collapse in the
ReplacingMergeTree and are invisible to readers using FINAL / `interactions_dedup`.
"""
from __future__ import annotations

from typing import Sequence

from clickhouse_driver import Client

from app.events import Event
from app.schema import INTERACTION_COLUMNS
from app.settings import Settings
from app.storage.clickhouse import client

_INSERT = f"INSERT INTO interactions ({', '.join(INTERACTION_COLUMNS)}) VALUES"
_TS = INTERACTION_COLUMNS.index("ts")


def first_copies(events: Sequence[Event]) -> list[int]:
    """Indices of the first event of each event_id, in order (the loader filters its side lists with them)."""
    first: dict[str, int] = {}
    for i, event in enumerate(events):
        first.setdefault(event.event_id, i)
    return list(first.values())


def dedup(events: Sequence[Event]) -> list[Event]:
    """Events with a repeated event_id removed (first copy kept, order kept)."""
    keep = first_copies(events)
    return list(events) if len(keep) == len(events) else [events[i] for i in keep]


def to_columns(events: Sequence[Event]) -> list[list]:
    """Column lists in INTERACTION_COLUMNS order; ts as integer epoch seconds."""
    columns = [list(column) for column in zip(*events)]
    columns[_TS] = [int(ts) for ts in columns[_TS]]
    return columns


def insert_events(conn: Client, events: Sequence[Event]) -> int:
    """Insert `events` (deduplicated by event_id) into `interactions`; returns rows sent."""
    unique_events = dedup(events)
    if not unique_events:
        return 0
    conn.execute(_INSERT, to_columns(unique_events), columnar=True, types_check=False)
    return len(unique_events)


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
