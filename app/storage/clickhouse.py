"""ClickHouse client factory and the schema migrations of database `cinerec`.

Deduplication choice: `interactions` is a ReplacingMergeTree whose sorting key
ends with `event_id`. A re-delivered batch writes rows with the same key; they
collapse on merge, and readers that must be exact read `FINAL` (or the
`interactions_dedup` view). Every column of a re-delivered event is identical,
so which copy survives does not matter. Works on 18.16 and current releases
(no DateTime64, no LowCardinality).
"""
from __future__ import annotations

import logging
from typing import Iterable
from urllib.parse import unquote, urlsplit

from clickhouse_driver import Client
from clickhouse_driver.errors import ServerException

from app.experiments.queries import experiment_daily_view
from app.settings import Settings

log = logging.getLogger(__name__)


def client(settings: Settings, database: str | None = None, numpy: bool = False) -> Client:
    """A native-protocol client with timeouts on connect, send and receive.

    `numpy=True` returns numpy columns (the trainer's bulk loads); the driver
    only concatenates blocks as arrays when this is set on the client, not per query.
    """
    timeout = settings.network_timeout_s
    kwargs = {
        "connect_timeout": timeout,
        "send_receive_timeout": max(timeout, 30.0),
        "sync_request_timeout": timeout,
        "settings": {"use_numpy": True} if numpy else {},
    }
    if database is not None:
        settings = settings.with_clickhouse_database(database)
    return _from_url(settings.clickhouse_url, kwargs)


def _from_url(url: str, kwargs: dict) -> Client:
    parts = urlsplit(url)
    return Client(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or (9440 if parts.scheme == "clickhouses" else 9000),
        user=unquote(parts.username or "default"),
        password=unquote(parts.password or ""),
        database=parts.path.lstrip("/") or "default",
        secure=parts.scheme == "clickhouses",
        connect_timeout=kwargs["connect_timeout"],
        send_receive_timeout=kwargs["send_receive_timeout"],
        sync_request_timeout=kwargs["sync_request_timeout"],
        settings=kwargs["settings"],
    )


def migrations(database: str) -> list[str]:
    """DDL in order; each statement is idempotent (IF NOT EXISTS)."""
    db = database
    return [
        f"CREATE DATABASE IF NOT EXISTS {db}",
        f"""
        CREATE TABLE IF NOT EXISTS {db}.interactions (
            event_id String,
            user_id UInt64,
            film_id UInt64,
            event_type String,
            ts DateTime,
            session_id String,
            watch_seconds Float32,
            duration_seconds Float32,
            rating Float32,
            source String,
            model_version String,
            position Int32,
            ingested_at DateTime DEFAULT now()
        ) ENGINE = ReplacingMergeTree
        PARTITION BY toYYYYMM(ts)
        ORDER BY (user_id, ts, event_id)
        """,
        f"CREATE VIEW IF NOT EXISTS {db}.interactions_dedup AS SELECT * FROM {db}.interactions FINAL",
        f"""
        CREATE TABLE IF NOT EXISTS {db}.films (
            film_id UInt64,
            title String,
            genres Array(String),
            release_date Date,
            duration_seconds Float32,
            updated_at DateTime DEFAULT now()
        ) ENGINE = ReplacingMergeTree(updated_at)
        ORDER BY film_id
        """,
        f"""
        CREATE TABLE IF NOT EXISTS {db}.model_runs (
            version String,
            started_at DateTime,
            finished_at DateTime,
            backend String,
            status String,
            published UInt8,
            reason String,
            n_users UInt64,
            n_items UInt64,
            n_interactions UInt64,
            params String,
            metrics String,
            baseline_metrics String,
            timings String
        ) ENGINE = ReplacingMergeTree(finished_at)
        ORDER BY version
        """,
        # Online experiments (app/experiments): one row per revision of an experiment; the
        # highest revision wins (read FINAL). Times are UTC; 1970-01-01 00:00:00 = not set.
        # hash_seed and threshold are derived from the id and share, stored so SQL (the
        # experiment_daily view) can assign arms exactly as the Python code does.
        f"""
        CREATE TABLE IF NOT EXISTS {db}.experiments (
            experiment_id String,
            control String,
            challenger String,
            share Float64,
            hash_seed UInt64,
            threshold UInt64,
            primary_metric String,
            guardrails String,
            mde Float64,
            min_users_per_arm UInt64,
            max_duration_s UInt64,
            created_at DateTime('UTC'),
            started_at DateTime('UTC'),
            ended_at DateTime('UTC'),
            state String,
            decision String,
            revision UInt64
        ) ENGINE = ReplacingMergeTree(revision)
        ORDER BY experiment_id
        """,
        # Every decision taken on an experiment, with the figures it was taken on (JSON).
        # decision_id is a hash of the whole decision: a retried write collapses.
        f"""
        CREATE TABLE IF NOT EXISTS {db}.experiment_decisions (
            experiment_id String,
            decided_at DateTime('UTC'),
            action String,
            verdict String,
            figures String,
            decision_id String
        ) ENGINE = ReplacingMergeTree
        ORDER BY (experiment_id, decided_at, decision_id)
        """,
        # Analyst views: daily activity per film and per user. Plain views over
        # FINAL rather than materialized views: a materialized view sees every
        # inserted block, so re-delivered batches would be counted twice, while
        # these are exact (at the price of aggregating at query time; filter by
        # day/film/user in the WHERE clause). 18.16-compatible (-If combinators).
        f"""
        CREATE VIEW IF NOT EXISTS {db}.film_daily AS
        SELECT
            toDate(ts) AS day,
            film_id,
            count() AS events,
            countIf(event_type = 'play') AS plays,
            uniqExactIf(user_id, event_type = 'play') AS viewers,
            countIf(event_type = 'complete') AS completes,
            countIf(event_type = 'rate') AS ratings,
            sumIf(rating, event_type = 'rate') AS rating_sum,
            countIf(event_type = 'impression') AS impressions,
            countIf(event_type = 'click') AS clicks
        FROM {db}.interactions FINAL
        WHERE film_id > 0
        GROUP BY day, film_id
        """,
        experiment_daily_view(db),
        f"""
        CREATE VIEW IF NOT EXISTS {db}.user_daily AS
        SELECT
            toDate(ts) AS day,
            user_id,
            count() AS events,
            uniqExact(session_id) AS sessions,
            countIf(event_type = 'play') AS plays,
            uniqExactIf(film_id, event_type = 'play') AS films_played,
            countIf(event_type = 'complete') AS completes,
            countIf(event_type = 'rate') AS ratings,
            min(ts) AS first_seen,
            max(ts) AS last_seen
        FROM {db}.interactions FINAL
        GROUP BY day, user_id
        """,
    ]


COLUMN_EXISTS = 44  # ClickHouse's ILLEGAL_COLUMN, what ADD COLUMN of an existing name raises

# Columns added to a table after it was first created, in order: (table, column, type).
# 18.16 has no `ADD COLUMN IF NOT EXISTS`, so `migrate` adds the ones system.columns lacks.
ADDED_COLUMNS: list[tuple[str, str, str]] = [
    # the retrain gate's evidence (docs/retrain.md, "The gate"); NULL: no such comparison in that run
    ("model_runs", "verdict", "String"),
    ("model_runs", "served_version", "String"),
    ("model_runs", "holdout_rule", "String"),
    ("model_runs", "holdout_start", "DateTime"),
    ("model_runs", "holdout_users", "UInt64"),
    ("model_runs", "holdout_share", "Float64"),
    ("model_runs", "vs_popular_mean", "Nullable(Float64)"),
    ("model_runs", "vs_popular_low", "Nullable(Float64)"),
    ("model_runs", "vs_popular_high", "Nullable(Float64)"),
    ("model_runs", "vs_served_mean", "Nullable(Float64)"),
    ("model_runs", "vs_served_low", "Nullable(Float64)"),
    ("model_runs", "vs_served_high", "Nullable(Float64)"),
    # which candidate shipped (the best single model or the two-level one) and the comparison
    # that decided it (docs/ranking.md); `models`: JSON of each candidate's metrics
    ("model_runs", "shipped", "String"),
    ("model_runs", "vs_single_mean", "Nullable(Float64)"),
    ("model_runs", "vs_single_low", "Nullable(Float64)"),
    ("model_runs", "vs_single_high", "Nullable(Float64)"),
    ("model_runs", "models", "String"),
    # each first-level model's recall@100 and NDCG@10 on the gate's holdout (JSON; docs/retrain.md)
    ("model_runs", "first_level", "String"),
]


def column_additions(conn: Client, database: str) -> list[str]:
    """`ALTER TABLE ... ADD COLUMN` for every column of ADDED_COLUMNS its table lacks, in order."""
    existing = set(conn.execute(
        "SELECT table, name FROM system.columns WHERE database = %(database)s", {"database": database}))
    return [f"ALTER TABLE {database}.{table} ADD COLUMN {column} {kind}"
            for table, column, kind in ADDED_COLUMNS if (table, column) not in existing]


def migrate(settings: Settings, extra: Iterable[str] = ()) -> list[str]:
    """Create the database and tables if missing, add missing columns; returns the statements run."""
    database = settings.clickhouse_database
    conn = client(settings, database="default")
    try:
        ran = []
        for statement in [*migrations(database), *extra]:
            conn.execute(statement)
            ran.append(" ".join(statement.split())[:80])
        for statement in column_additions(conn, database):
            try:
                conn.execute(statement)
            except ServerException as exc:
                if exc.code != COLUMN_EXISTS:  # another migrate added it meanwhile: done either way
                    raise
            ran.append(statement)
        log.info("clickhouse schema of %s is up to date (%d statements)", database, len(ran))
        return ran
    finally:
        conn.disconnect()
