"""Schema migrations against a real ClickHouse (18.16 here): idempotent, and columns added later reach old tables."""
from __future__ import annotations

import pytest

from app.settings import Settings
from app.storage.clickhouse import ADDED_COLUMNS, client, migrate


def _columns(settings: Settings, table: str) -> list[str]:
    conn = client(settings)
    try:
        return [name for name, in conn.execute(
            "SELECT name FROM system.columns WHERE database = %(db)s AND table = %(table)s",
            {"db": settings.clickhouse_database, "table": table})]
    finally:
        conn.disconnect()


@pytest.mark.integration
def test_migrate_adds_later_columns_to_an_old_table_once(clickhouse_settings: Settings) -> None:
    database = clickhouse_settings.clickhouse_database
    added = [column for table, column, _ in ADDED_COLUMNS if table == "model_runs"]
    conn = client(clickhouse_settings)
    try:  # model_runs as the first release created it
        for column in added:
            conn.execute(f"ALTER TABLE {database}.model_runs DROP COLUMN {column}")
    finally:
        conn.disconnect()
    assert not set(added) & set(_columns(clickhouse_settings, "model_runs"))

    ran = migrate(clickhouse_settings)
    assert [s for s in ran if s.startswith("ALTER")] == [
        f"ALTER TABLE {database}.model_runs ADD COLUMN {column} {kind}"
        for table, column, kind in ADDED_COLUMNS if table == "model_runs"]
    assert _columns(clickhouse_settings, "model_runs")[-len(added):] == added
    assert not [s for s in migrate(clickhouse_settings) if s.startswith("ALTER")]  # nothing left to add
