"""The one place that reads the environment (12-factor).

Every other module takes a `Settings` (or calls `get_settings()`), so tests and
tools can build their own without touching `os.environ`.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

REPO_ROOT = Path(__file__).resolve().parent.parent

DEFAULTS: dict[str, str] = {
    "KAFKA_BROKER": "kafka://127.0.0.1:9092",
    "CLICKHOUSE_URL": "clickhouse://default@127.0.0.1:9000/cinerec",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "CELERY_BROKER_URL": "redis://127.0.0.1:6379/1",
    "LOCAL_DIR": str(REPO_ROOT / ".local"),
    "MODEL_DIR": str(REPO_ROOT / ".local" / "models"),
    "RETRAIN_INTERVAL_HOURS": "48",
    "TOPIC_PARTITIONS": "4",
    "TOPIC_INTERACTIONS": "interactions",
    "TOPIC_DLQ": "interactions-dlq",
    "APP_ID": "cinerec",
    "WEB_PORT": "6066",
    "WEB_HOST": "127.0.0.1",
    "ADMIN_TOKEN": "",
    "LOG_LEVEL": "info",
    "NETWORK_TIMEOUT_S": "5",
    "LOADER_BATCH_MAX": "20000",
    "LOADER_BATCH_WITHIN_S": "1.0",
    # Bytes per partition in one broker fetch (docs/ingestion.md "Session 6: the loader's fetch size").
    "LOADER_FETCH_BYTES": str(4 << 20),
    "TRAIN_BACKEND": "implicit",
    "SPARK_MASTER": "local[*]",
    "FAUST_STORE": "memory://",
    "STATS_ENABLED": "1",
    "TABLE_STANDBY_REPLICAS": "0",
    # Serving port (README "Security").
    "ANALYTICS_TOKEN": "",
    "ANALYTICS_OPEN": "0",
    "DEBUG_VIEWS": "0",
    # Analytics isolation (app/analytics/service.py).
    "ANALYTICS_WORKERS": "2",
    "ANALYTICS_QUEUE_S": "5",
    "ANALYTICS_TIMEOUT_S": "30",
    "ANALYTICS_CACHE_S": "60",
    "GATE_MIN_USERS": "500",
    "GATE_MAX_HOLDOUT_SHARE": "0.2",
    # Self-tuning in every retrain (app/recsys/tuning, docs/models.md "Self-tuning").
    "TUNE_TRIALS": "20",
    "TUNE_TIME_SHARE": "0.5",
    "STATS_TTL_DAYS": "30",
    "LOADER_STALL_S": "120",
    # Rollout policy (app/experiments/rollout.py).
    "ROLLOUT": "switch",
    "ROLLOUT_SHARE": "0.10",
    "EXPERIMENT_EVAL_MINUTES": "60",
    # Serving from memory (docs/serving.md).
    "SERVE_MEMORY_MB": "1024",
    "RECENT_CACHE_USERS": "250000",
    "RECENT_CACHE_COMPLETE": "1",
}


ROLLOUTS = ("switch", "experiment")

# Fields never printed (`describe`, `cinerec config`).
SECRETS = ("admin_token", "analytics_token")


class SettingsError(ValueError):
    """An environment variable has a value we cannot use."""


def _int(env: Mapping[str, str], name: str, minimum: int = 0) -> int:
    raw = env.get(name, DEFAULTS[name])
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be >= {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str) -> float:
    raw = env.get(name, DEFAULTS[name])
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be > 0, got {value}")
    return value


def _share(env: Mapping[str, str], name: str) -> float:
    value = _float(env, name)
    if value >= 1:
        raise SettingsError(f"{name} must be < 1, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, DEFAULTS[name]).strip().lower()
    if raw not in ("1", "0", "true", "false", "yes", "no"):
        raise SettingsError(f"{name} must be 1/0/true/false/yes/no, got {raw!r}")
    return raw in ("1", "true", "yes")


def _url(env: Mapping[str, str], name: str, schemes: tuple[str, ...], multiple: bool = False) -> str:
    """Validate a service URL; with `multiple`, a Faust-style `;` list whose later
    entries may omit the scheme (`kafka://h1:9092;h2:9092`)."""
    raw = env.get(name, DEFAULTS[name])
    pieces = raw.split(";") if multiple else [raw]
    scheme = urlsplit(pieces[0]).scheme
    for piece in pieces:
        parts = urlsplit(piece if "://" in piece else f"{scheme}://{piece}")
        if parts.scheme not in schemes or not parts.hostname:
            raise SettingsError(f"{name} must look like {DEFAULTS[name]!r}, got {raw!r}")
        try:
            parts.port
        except ValueError:
            raise SettingsError(f"{name} has a bad port: {raw!r}") from None
    return raw


def _with_path(url: str, path: str) -> str:
    """`url` with its last path segment (database name or number) replaced."""
    return urlsplit(url)._replace(path=f"/{path}").geturl()


@dataclass(frozen=True)
class Settings:
    kafka_broker: str
    clickhouse_url: str
    redis_url: str
    celery_broker_url: str
    local_dir: Path
    model_dir: Path
    retrain_interval_hours: int
    topic_partitions: int
    topic_interactions: str
    topic_dlq: str
    app_id: str
    web_port: int
    web_host: str
    admin_token: str
    log_level: str
    network_timeout_s: float
    loader_batch_max: int
    loader_batch_within_s: float
    # aiokafka's max_partition_fetch_bytes for the loader: about a batch per partition fetch, so the
    # next fetch of a drained partition overlaps the work on the others' (1 MB made it serial)
    loader_fetch_bytes: int
    train_backend: str
    spark_master: str
    faust_store: str
    # Off: the worker runs only the loader (bench/ingest.py --loader-only).
    stats_enabled: bool
    # Standby copies of each table partition kept by other workers (Faust's table_standby_replicas).
    # 0 by default: a standby makes a failover instant, but every worker also replays the others'
    # changelogs, which cost two workers on 2 cores 5x their throughput (docs/scaling.md).
    table_standby_replicas: int
    # Bearer token of /v1/analytics/* (ADMIN_TOKEN works too); ANALYTICS_OPEN serves them without one.
    analytics_token: str
    analytics_open: bool
    # Mount the per-worker /debug/... views (they still need ADMIN_TOKEN).
    debug_views: bool
    # Threads (= concurrent reports) of the analytics pool, how long a request waits
    # for one before a 429, the deadline of one report, and how long a result is reused.
    analytics_workers: int
    analytics_queue_s: float
    analytics_timeout_s: float
    analytics_cache_s: float
    # The retrain gate's holdout grows back from the newest event until it holds this many
    # evaluable users, or this share of the window's events, whichever comes first (docs/retrain.md).
    gate_min_users: int
    gate_max_holdout_share: float
    # The retrain's ALS search: at most this many trials, and at most this share of the retrain's time.
    tune_trials: int
    tune_time_share: float
    # Per-user stats and per-(film, user) viewer entries expire after this long without a write.
    stats_ttl_days: float
    # /ready turns false when the loader made no progress for this long while it has work.
    loader_stall_s: float
    # What a retrain that passes the gate does while a version is served: `switch` it for
    # everyone at once, or start an `experiment` with the new version as challenger on
    # ROLLOUT_SHARE of the users; the periodic evaluation (every EXPERIMENT_EVAL_MINUTES)
    # promotes it or keeps the control (docs/experiments.md "Rollout").
    rollout: str
    rollout_share: float
    experiment_eval_minutes: int
    # Served versions' lists kept in memory (a file per version under LOCAL_DIR/serving, shared
    # by the host's web processes) up to this size; past it, hot users are cached. 0: read Redis.
    serve_memory_mb: int
    # Users whose recent watches a web process keeps, invalidated by Redis (client-side caching,
    # app/web/recent_cache.py): an LRU of this many. 0: read the mirror on every request.
    recent_cache_users: int
    # Hold a complete copy of the mirror's recent watches (BCAST tracking + a SCAN load) while it has
    # at most RECENT_CACHE_USERS users, so a first ask needs no Redis read; else the LRU above.
    recent_cache_complete: bool
    # Which of KAFKA_BROKER / CLICKHOUSE_URL / REDIS_URL were changed from the
    # local default: `cinerec services` starts nothing for those.
    external: frozenset[str] = field(default=frozenset())

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        backend = env.get("TRAIN_BACKEND", DEFAULTS["TRAIN_BACKEND"])
        if backend not in ("implicit", "spark"):
            raise SettingsError(f"TRAIN_BACKEND must be 'implicit' or 'spark', got {backend!r}")
        rollout = env.get("ROLLOUT", DEFAULTS["ROLLOUT"]).strip().lower()
        if rollout not in ROLLOUTS:
            raise SettingsError(f"ROLLOUT must be one of {', '.join(ROLLOUTS)}, got {rollout!r}")
        log_level = env.get("LOG_LEVEL", DEFAULTS["LOG_LEVEL"]).lower()
        if log_level not in ("debug", "info", "warning", "error"):
            raise SettingsError(f"LOG_LEVEL must be debug/info/warning/error, got {log_level!r}")
        external = frozenset(
            service
            for service, var in (("kafka", "KAFKA_BROKER"), ("clickhouse", "CLICKHOUSE_URL"), ("redis", "REDIS_URL"))
            if env.get(var, DEFAULTS[var]) != DEFAULTS[var]
        )
        local_dir = Path(env.get("LOCAL_DIR", DEFAULTS["LOCAL_DIR"]))
        return cls(
            kafka_broker=_url(env, "KAFKA_BROKER", ("kafka",), multiple=True),
            clickhouse_url=_url(env, "CLICKHOUSE_URL", ("clickhouse", "clickhouses")),
            redis_url=_url(env, "REDIS_URL", ("redis", "rediss", "unix")),
            celery_broker_url=_url(env, "CELERY_BROKER_URL", ("redis", "rediss", "amqp", "memory")),
            local_dir=local_dir,
            model_dir=Path(env.get("MODEL_DIR", str(local_dir / "models"))),
            retrain_interval_hours=_int(env, "RETRAIN_INTERVAL_HOURS", minimum=1),
            topic_partitions=_int(env, "TOPIC_PARTITIONS", minimum=1),
            topic_interactions=env.get("TOPIC_INTERACTIONS", DEFAULTS["TOPIC_INTERACTIONS"]),
            topic_dlq=env.get("TOPIC_DLQ", DEFAULTS["TOPIC_DLQ"]),
            app_id=env.get("APP_ID", DEFAULTS["APP_ID"]),
            web_port=_int(env, "WEB_PORT", minimum=1),
            web_host=env.get("WEB_HOST", DEFAULTS["WEB_HOST"]),
            admin_token=env.get("ADMIN_TOKEN", DEFAULTS["ADMIN_TOKEN"]),
            log_level=log_level,
            network_timeout_s=_float(env, "NETWORK_TIMEOUT_S"),
            loader_batch_max=_int(env, "LOADER_BATCH_MAX", minimum=1),
            loader_batch_within_s=_float(env, "LOADER_BATCH_WITHIN_S"),
            loader_fetch_bytes=_int(env, "LOADER_FETCH_BYTES", minimum=1024),
            train_backend=backend,
            spark_master=env.get("SPARK_MASTER", DEFAULTS["SPARK_MASTER"]),
            faust_store=env.get("FAUST_STORE", DEFAULTS["FAUST_STORE"]),
            stats_enabled=_bool(env, "STATS_ENABLED"),
            table_standby_replicas=_int(env, "TABLE_STANDBY_REPLICAS"),
            analytics_token=env.get("ANALYTICS_TOKEN", DEFAULTS["ANALYTICS_TOKEN"]),
            analytics_open=_bool(env, "ANALYTICS_OPEN"),
            debug_views=_bool(env, "DEBUG_VIEWS"),
            analytics_workers=_int(env, "ANALYTICS_WORKERS", minimum=1),
            analytics_queue_s=_float(env, "ANALYTICS_QUEUE_S"),
            analytics_timeout_s=_float(env, "ANALYTICS_TIMEOUT_S"),
            analytics_cache_s=_float(env, "ANALYTICS_CACHE_S"),
            gate_min_users=_int(env, "GATE_MIN_USERS", minimum=1),
            gate_max_holdout_share=_share(env, "GATE_MAX_HOLDOUT_SHARE"),
            tune_trials=_int(env, "TUNE_TRIALS", minimum=1),
            tune_time_share=_share(env, "TUNE_TIME_SHARE"),
            stats_ttl_days=_float(env, "STATS_TTL_DAYS"),
            loader_stall_s=_float(env, "LOADER_STALL_S"),
            rollout=rollout,
            rollout_share=_share(env, "ROLLOUT_SHARE"),
            experiment_eval_minutes=_int(env, "EXPERIMENT_EVAL_MINUTES", minimum=1),
            serve_memory_mb=_int(env, "SERVE_MEMORY_MB", minimum=0),
            recent_cache_users=_int(env, "RECENT_CACHE_USERS", minimum=0),
            recent_cache_complete=_bool(env, "RECENT_CACHE_COMPLETE"),
            external=external,
        )

    def with_overrides(self, **changes: object) -> "Settings":
        """A copy with some fields changed (tests, benchmarks)."""
        return replace(self, **changes)

    def with_clickhouse_database(self, database: str, **changes: object) -> "Settings":
        """A copy on another ClickHouse database of the same server (tests, benchmarks)."""
        return replace(self, clickhouse_url=_with_path(self.clickhouse_url, database), **changes)

    def with_redis_db(self, db: int, **changes: object) -> "Settings":
        """A copy on another Redis database number of the same server (tests, benchmarks)."""
        return replace(self, redis_url=_with_path(self.redis_url, str(db)), **changes)

    @property
    def kafka_bootstrap(self) -> str:
        """`host:port` for plain aiokafka clients (Faust wants the kafka:// URL)."""
        return ",".join(urlsplit(u if "://" in u else f"kafka://{u}").netloc for u in self.kafka_broker.split(";"))

    @property
    def loader_group(self) -> str:
        """Consumer group of the loader service (its own aiokafka consumer, not Faust's group)."""
        return f"{self.app_id}-loader"

    @property
    def user_batches_topic(self) -> str:
        """Internal topic: one stats message per loaded batch and source partition (agents/batches.py)."""
        return f"{self.app_id}-user-batches"

    @property
    def film_batches_topic(self) -> str:
        """Internal topic: the film actions of a loaded batch, one message per film partition."""
        return f"{self.app_id}-film-batches"

    @property
    def clickhouse_database(self) -> str:
        return urlsplit(self.clickhouse_url).path.lstrip("/") or "default"

    @property
    def web_url(self) -> str:
        return f"http://{self.web_host}:{self.web_port}"

    def describe(self) -> dict[str, str]:
        """Settings as strings for logs, with the tokens hidden."""
        out = {f.name: str(getattr(self, f.name)) for f in fields(self) if f.name != "external"}
        for name in SECRETS:
            out[name] = "***" if getattr(self, name) else "(unset)"
        return out


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings of this process, read once from the environment."""
    return Settings.from_env()
