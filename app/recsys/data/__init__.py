"""Interactions as numpy columns, event weighting, id maps, and loading them from ClickHouse."""
