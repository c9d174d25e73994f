"""Reads and writes of ClickHouse `model_runs`: one row per retrain run (schema: `clickhouse.migrations`).

A rejected or failed run is recorded too, with its reason, so operators can
see why nothing changed (`cinerec models`). The table is a ReplacingMergeTree
by version: recording a run again replaces its row.
"""
from __future__ import annotations

import json
from typing import Any, Mapping

from app.settings import Settings
from app.storage.clickhouse import client

# What `recent` returns per run (the `cinerec models` view).
LISTED = ("version", "started_at", "finished_at", "status", "published", "reason", "verdict", "served_version",
          "holdout_rule", "holdout_users", "holdout_share", "vs_popular_mean", "vs_popular_low", "vs_popular_high",
          "vs_served_mean", "vs_served_low", "vs_served_high", "shipped", "vs_single_mean", "vs_single_low",
          "vs_single_high", "models", "n_users", "n_items", "n_interactions", "params", "metrics",
          "baseline_metrics", "first_level", "timings")


def record(settings: Settings, row: Mapping[str, Any]) -> None:
    """Insert one run (column -> value)."""
    conn = client(settings)
    try:
        conn.execute(f"INSERT INTO {settings.clickhouse_database}.model_runs ({', '.join(row)}) VALUES", [dict(row)])
    finally:
        conn.disconnect()


def recent(settings: Settings, limit: int = 20) -> list[dict[str, Any]]:
    """The latest runs, newest first, as dicts of the `LISTED` columns."""
    conn = client(settings)
    try:
        rows = conn.execute(
            f"SELECT {', '.join(LISTED)} FROM {settings.clickhouse_database}.model_runs FINAL "
            "ORDER BY started_at DESC LIMIT %(limit)s",
            {"limit": limit},
        )
    finally:
        conn.disconnect()
    return [dict(zip(LISTED, row)) for row in rows]


def last_finished(settings: Settings) -> dict[str, Any] | None:
    """The newest run that got through (published or rejected, not failed): its `params` and
    `timings` (parsed) and wall `seconds`; None when there is none. The next run's tuning starts
    from that run's winner and sizes its time budget by that run's duration."""
    conn = client(settings)
    try:
        rows = conn.execute(
            f"SELECT params, timings, toUInt32(finished_at) - toUInt32(started_at) "
            f"FROM {settings.clickhouse_database}.model_runs FINAL "
            "WHERE status IN ('published', 'rejected') ORDER BY started_at DESC, version DESC LIMIT 1")
    finally:
        conn.disconnect()
    if not rows:
        return None
    params, timings, seconds = rows[0]
    return {"params": json.loads(params or "{}"), "timings": json.loads(timings or "{}"), "seconds": float(seconds)}
