"""`send_and_read`: the one Redis round trip of a recommendation, against the real Redis (db 5)."""
from __future__ import annotations

import pytest
import redis
from redis.exceptions import ResponseError

from app.settings import Settings
from app.web.reader import send_and_read
from app.web.server import redis_client

pytestmark = [pytest.mark.integration, pytest.mark.redis_db(5)]


async def test_reads_value_and_list_head_and_missing_keys(redis_settings: Settings) -> None:
    sync = redis.Redis.from_url(redis_settings.redis_url, socket_timeout=5)
    sync.set("k", b"value")
    sync.rpush("l", *range(1, 8))
    client = redis_client(redis_settings, 5.0)
    try:
        assert await send_and_read(client, ("GET", "k"), ("LRANGE", "l", 0, 2)) == [b"value", [b"1", b"2", b"3"]]
        assert await send_and_read(client, ("GET", "missing"), ("LRANGE", "missing-list", 0, 2)) == [None, []]
        assert await send_and_read(client, ("LRANGE", "l", 0, 0)) == [[b"1"]]
    finally:
        await client.aclose()
        sync.close()


async def test_an_error_reply_does_not_leave_a_reply_for_the_next_request(redis_settings: Settings) -> None:
    """GET on a list fails while the LRANGE reply is still unread: the connection must not
    hand that reply to the next caller (it is dropped), and the next call reads its own."""
    sync = redis.Redis.from_url(redis_settings.redis_url, socket_timeout=5)
    sync.set("k", b"value")
    sync.rpush("l", 4, 5)
    client = redis_client(redis_settings, 5.0)
    client.connection_pool.max_connections = 1  # the next call must reuse (or replace) that connection
    try:
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await send_and_read(client, ("GET", "l"), ("LRANGE", "l", 0, 1))
        assert await send_and_read(client, ("GET", "k"), ("LRANGE", "l", 0, 0)) == [b"value", [b"4"]]
    finally:
        await client.aclose()
        sync.close()
