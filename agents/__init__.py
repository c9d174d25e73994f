"""Faust agents: loader (Kafka -> ClickHouse), stats (tables), dead letters."""
