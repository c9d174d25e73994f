"""Writing the film catalog into ClickHouse `films` (simulator and MovieLens import).

Idempotent: `films` is a ReplacingMergeTree(updated_at) ordered by film_id, so
writing a catalog again replaces each film's row on merge; readers that must
see exactly one row per film read `FINAL`.
"""
from __future__ import annotations

from datetime import date
from typing import Sequence

from app.schema import FILM_COLUMNS
from app.settings import Settings
from app.storage.clickhouse import client

FilmRow = tuple[int, str, list[str], date, float]  # FILM_COLUMNS order
_INSERT = f"INSERT INTO films ({', '.join(FILM_COLUMNS)}) VALUES"
CHUNK = 50_000


def write_films(settings: Settings, rows: Sequence[FilmRow]) -> int:
    """Insert (or replace) catalog rows; returns how many were written."""
    conn = client(settings)
    try:
        for start in range(0, len(rows), CHUNK):
            conn.execute(_INSERT, list(rows[start : start + CHUNK]))
    finally:
        conn.disconnect()
    return len(rows)
