"""Adapters for ClickHouse and Redis: schemas, key names, codecs."""
