"""Celery app, beat schedule and the retrain task."""
