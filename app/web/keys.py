"""Typed keys of the aiohttp Application state (set up in app/web/server.py)."""
from __future__ import annotations

import redis.asyncio as aioredis
from aiohttp import web
from celery import Celery

from app.analytics.service import Analytics
from app.settings import Settings
from app.web.health import Progress
from app.web.reader import Reader, RecentSource

SETTINGS = web.AppKey("cinerec_settings", Settings)
READER = web.AppKey("cinerec_reader", Reader)
REDIS_PROBE = web.AppKey("cinerec_redis_probe", aioredis.Redis)
CELERY = web.AppKey("cinerec_celery", Celery)
ANALYTICS = web.AppKey("cinerec_analytics", Analytics)
# Only in the Faust worker (app/web/worker.py): recent watches from its own table.
RECENT = web.AppKey("cinerec_recent", RecentSource)
# Only in the Faust worker (app/web/worker.py): the loader's progress, checked by /ready.
LOADER_PROGRESS = web.AppKey("cinerec_loader_progress", Progress)
