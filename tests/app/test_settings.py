"""Settings parsing: defaults, overrides, rejected values, derived properties."""
from __future__ import annotations

from pathlib import Path

import pytest

from app.settings import DEFAULTS, Settings, SettingsError


def test_defaults_point_at_the_local_stack() -> None:
    s = Settings.from_env({})
    assert s.kafka_broker == DEFAULTS["KAFKA_BROKER"]
    assert s.kafka_bootstrap == "127.0.0.1:9092"
    assert s.clickhouse_database == "cinerec"
    assert s.redis_url == DEFAULTS["REDIS_URL"]
    assert s.topic_partitions == int(DEFAULTS["TOPIC_PARTITIONS"])
    assert s.retrain_interval_hours == 48
    assert (s.gate_min_users, s.gate_max_holdout_share) == (500, 0.2)
    assert (s.rollout, s.rollout_share, s.experiment_eval_minutes) == ("switch", 0.1, 60)
    assert s.external == frozenset()
    assert (s.loader_batch_max, s.loader_fetch_bytes) == (20_000, 4 * 1024 * 1024)


def test_overrides_are_read_and_typed() -> None:
    s = Settings.from_env({
        "TOPIC_PARTITIONS": "8", "WEB_PORT": "7000", "NETWORK_TIMEOUT_S": "2.5",
        "LOG_LEVEL": "DEBUG", "LOCAL_DIR": "/tmp/x", "TRAIN_BACKEND": "spark",
        "ROLLOUT": "Experiment", "ROLLOUT_SHARE": "0.25", "EXPERIMENT_EVAL_MINUTES": "15",
        "LOADER_FETCH_BYTES": "1048576",
    })
    assert s.loader_fetch_bytes == 1048576
    assert (s.rollout, s.rollout_share, s.experiment_eval_minutes) == ("experiment", 0.25, 15)
    assert (s.topic_partitions, s.web_port, s.network_timeout_s) == (8, 7000, 2.5)
    assert s.log_level == "debug"
    assert s.train_backend == "spark"
    assert s.local_dir == Path("/tmp/x")
    assert s.model_dir == Path("/tmp/x/models")  # follows LOCAL_DIR unless set
    assert s.web_url == "http://127.0.0.1:7000"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("TOPIC_PARTITIONS", "four", "TOPIC_PARTITIONS must be an integer"),
        ("TOPIC_PARTITIONS", "0", "TOPIC_PARTITIONS must be >= 1"),
        ("NETWORK_TIMEOUT_S", "-1", "NETWORK_TIMEOUT_S must be > 0"),
        ("NETWORK_TIMEOUT_S", "soon", "NETWORK_TIMEOUT_S must be a number"),
        ("KAFKA_BROKER", "127.0.0.1:9092", "KAFKA_BROKER must look like"),
        ("CLICKHOUSE_URL", "http://127.0.0.1:8123", "CLICKHOUSE_URL must look like"),
        ("REDIS_URL", "redis://127.0.0.1:port/0", "REDIS_URL has a bad port"),
        ("TRAIN_BACKEND", "tensorflow", "TRAIN_BACKEND must be"),
        ("LOG_LEVEL", "loud", "LOG_LEVEL must be"),
        ("GATE_MIN_USERS", "0", "GATE_MIN_USERS must be >= 1"),
        ("GATE_MAX_HOLDOUT_SHARE", "1", "GATE_MAX_HOLDOUT_SHARE must be < 1"),
        ("GATE_MAX_HOLDOUT_SHARE", "0", "GATE_MAX_HOLDOUT_SHARE must be > 0"),
        ("ROLLOUT", "canary", "ROLLOUT must be one of switch, experiment"),
        ("ROLLOUT_SHARE", "1.5", "ROLLOUT_SHARE must be < 1"),
        ("ROLLOUT_SHARE", "0", "ROLLOUT_SHARE must be > 0"),
        ("EXPERIMENT_EVAL_MINUTES", "0", "EXPERIMENT_EVAL_MINUTES must be >= 1"),
        ("LOADER_FETCH_BYTES", "1000", "LOADER_FETCH_BYTES must be >= 1024"),
    ],
)
def test_bad_values_raise_a_settings_error_naming_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env({name: value})


def test_external_lists_only_the_services_whose_url_changed() -> None:
    s = Settings.from_env({
        "KAFKA_BROKER": "kafka://broker-1:9092;broker-2:9093",
        "REDIS_URL": "redis://cache:6380/2",
        "CLICKHOUSE_URL": DEFAULTS["CLICKHOUSE_URL"],  # set, but to the default: still local
    })
    assert s.external == frozenset({"kafka", "redis"})
    assert s.kafka_bootstrap == "broker-1:9092,broker-2:9093"


def test_clickhouse_database_comes_from_the_url_path() -> None:
    assert Settings.from_env({"CLICKHOUSE_URL": "clickhouse://u:p@db:9000/analytics"}).clickhouse_database == "analytics"
    assert Settings.from_env({"CLICKHOUSE_URL": "clickhouse://db:9000"}).clickhouse_database == "default"


def test_another_database_keeps_server_and_credentials() -> None:
    s = Settings.from_env({"CLICKHOUSE_URL": "clickhouse://u:p@db:9000/analytics", "REDIS_URL": "redis://:pw@cache:6380/0"})
    t = s.with_clickhouse_database("scratch", app_id="other").with_redis_db(7)
    assert t.clickhouse_url == "clickhouse://u:p@db:9000/scratch"
    assert t.clickhouse_database == "scratch"
    assert t.redis_url == "redis://:pw@cache:6380/7"
    assert t.app_id == "other"
    assert s.clickhouse_database == "analytics"


def test_describe_hides_the_admin_token() -> None:
    described = Settings.from_env({"ADMIN_TOKEN": "s3cret"}).describe()
    assert described["admin_token"] == "***"
    assert "s3cret" not in described.values()


def test_with_overrides_leaves_the_original_untouched() -> None:
    s = Settings.from_env({})
    t = s.with_overrides(topic_interactions="other")
    assert (s.topic_interactions, t.topic_interactions) == ("interactions", "other")


def test_a_broker_list_is_validated_entry_by_entry() -> None:
    with pytest.raises(SettingsError, match="KAFKA_BROKER has a bad port"):
        Settings.from_env({"KAFKA_BROKER": "kafka://broker-1:9092;broker-2:x"})


def test_describe_hides_every_token() -> None:
    described = Settings.from_env({"ADMIN_TOKEN": "s3cret", "ANALYTICS_TOKEN": "an4lytics"}).describe()
    assert described["admin_token"] == described["analytics_token"] == "***"
    assert not {"s3cret", "an4lytics"} & set(described.values())


def test_serving_port_is_private_by_default() -> None:
    s = Settings.from_env({})
    assert (s.analytics_open, s.debug_views, s.analytics_token) == (False, False, "")
    assert s.analytics_workers >= 1 and s.analytics_queue_s > 0 and s.analytics_cache_s > 0
