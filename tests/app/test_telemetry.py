"""counter_values: the numbers the periodic ingestion log line prints."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from app.telemetry import counter_values


def test_counter_values_by_label_and_unlabelled() -> None:
    registry = CollectorRegistry()
    by_reason = Counter("t_dead_total", "x", ["reason"], registry=registry)
    plain = Counter("t_loaded_total", "x", registry=registry)
    by_reason.labels("malformed_json").inc(2)
    by_reason.labels("future_ts").inc()
    plain.inc(5)
    assert counter_values(by_reason) == {"malformed_json": 2, "future_ts": 1}
    assert counter_values(plain) == {"": 5}
