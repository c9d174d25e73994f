"""The retrain run: its stages in order, and publishing a version to Redis."""
