"""Recommender code: datasets, models, evaluation, publishing. No Faust/Celery imports."""
