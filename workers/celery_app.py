"""The Celery app: `celery -A workers.celery_app beat|worker` (see Procfile)."""
from __future__ import annotations

from celery import Celery

app = Celery("cinerec")
app.config_from_object("workers.config")
app.autodiscover_tasks(["workers"], related_name="tasks", force=True)
