"""The blocking Redis client of batch code (trainer, lock, CLI); the web has its own asyncio one."""
from __future__ import annotations

import redis

from app.settings import Settings


def connect(settings: Settings) -> redis.Redis:
    """A client with timeouts on connect and on every reply."""
    return redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=max(settings.network_timeout_s, 30.0),  # a 5,000-key MSET is one big reply wait
        socket_connect_timeout=settings.network_timeout_s,
    )
