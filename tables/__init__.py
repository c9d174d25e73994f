"""Faust table declarations only."""
