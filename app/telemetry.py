"""Prometheus metrics of ingestion (loader, dead letters, stats mirror).

They live in the default registry, which the web app serves at `/metrics`.
Defined once here so the agents, the benchmark and the tests name the same
series; label values are bounded (DLQ reasons are the short codes of
`app.events.InvalidEvent`, never free text).
"""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_LOADED = Counter(
    "cinerec_ingest_events_loaded_total",
    "Valid events inserted into ClickHouse (re-deliveries included).",
)
EVENTS_DEAD_LETTERED = Counter(
    "cinerec_ingest_dead_letters_total",
    "Events sent to the dead-letter topic, by reason.",
    ["reason"],
)
INSERT_RETRIES = Counter(
    "cinerec_ingest_insert_retries_total",
    "ClickHouse insert attempts that failed and were retried.",
)
BATCH_SIZE = Histogram(
    "cinerec_ingest_batch_size",
    "Messages per loader batch (take).",
    buckets=(1, 10, 50, 100, 500, 1000, 2000, 5000, 10000, 20000),
)
INSERT_SECONDS = Histogram(
    "cinerec_ingest_insert_seconds",
    "Duration of one successful ClickHouse batch insert.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
INGEST_LAG = Gauge(
    "cinerec_ingest_lag_seconds",
    "Wall time minus the newest event time of the last loaded batch.",
)
REDIS_MIRROR_DROPPED = Counter(
    "cinerec_stats_redis_updates_dropped_total",
    "Recent-watch updates dropped from the full Redis mirror buffer (a long Redis outage).",
)
DUPLICATES_DROPPED = Counter(
    "cinerec_ingest_duplicates_dropped_total",
    "Events dropped by the loader because their event_id already came earlier in the same batch.",
)
REDIS_MIRROR_WRITES = Counter(
    "cinerec_stats_redis_keys_written_total",
    "Keys written to Redis by the stats mirror (recent lists, trending).",
)


def counter_values(counter: Counter) -> dict[str, int]:
    """Current totals of a counter keyed by its first label value ('' if unlabelled), for log lines."""
    return {
        next(iter(sample.labels.values()), ""): int(sample.value)
        for metric in counter.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    }
