"""The Faust worker answers from memory: lists compacted in process, recent watches from its own
`user_stats` table (it owns every partition here), and the answers equal those of a server that
reads everything from Redis (real Kafka, ClickHouse, Redis db 2)."""
from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from aiohttp.test_utils import TestClient, TestServer

from app.events import Event, new_event_id
from app.settings import Settings
from app.storage import redis_keys as keys
from app.web.server import create_web_app
from app.worker_process import WorkerProcess
from tests.integration.ingest_support import messages_of, produce
from tests.integration.web_support import FILMS, publish_version, sync_redis, whole_json

pytestmark = [pytest.mark.integration, pytest.mark.redis_db(2), pytest.mark.slow]
WARM = np.arange(1, 201, dtype=np.int64)
WATCHERS = [*range(1, 21), *range(5_001, 5_011)]  # warm users and fresh (fold-in) users who watch now
DEADLINE_S = 90.0


def plays(user_ids: list[int], seed: int = 3) -> list[Event]:
    rng = np.random.default_rng(seed)
    now = time.time() - 60
    return [Event(new_event_id(), user, int(film), "play", now + i, duration_seconds=6000.0)
            for i, (user, film) in enumerate((u, f) for u in user_ids
                                            for f in rng.choice(FILMS, size=3, replace=False))]


def redis_reads(url: str) -> dict[str, float]:
    """Recommendations served so far by what they read from Redis (summed over source and degraded)."""
    text = requests.get(f"{url}/metrics", timeout=10).text
    out: dict[str, float] = {}
    for labels, count in re.findall(r"^cinerec_recommendations_total\{([^}]*)\} (\S+)$", text, re.M):
        reads = re.search(r'redis_reads="([^"]+)"', labels).group(1)
        out[reads] = out.get(reads, 0.0) + float(count)
    return out


async def test_worker_answers_from_its_table_and_memory_like_redis(
    kafka_settings: Settings, clickhouse_settings: Settings, redis_settings: Settings, tmp_path: Path
) -> None:
    conn = sync_redis(redis_settings)
    publish_version(conn, "v1", seed=41, users=WARM)
    settings = kafka_settings.with_overrides(clickhouse_url=clickhouse_settings.clickhouse_url,
                                             redis_url=redis_settings.redis_url, local_dir=tmp_path)
    events = plays(WATCHERS)
    with WorkerProcess(settings, tmp_path / "worker.log") as worker:
        url = worker.settings.web_url
        await produce(settings, messages_of(events))
        deadline = time.monotonic() + DEADLINE_S
        while not all(conn.exists(keys.recent(u)) for u in WATCHERS):  # folded, and mirrored to Redis
            assert time.monotonic() < deadline, "the stats agent never mirrored the watches"
            await asyncio.sleep(0.2)
        before = redis_reads(url)
        reference = redis_settings.with_overrides(serve_memory_mb=0, local_dir=tmp_path / "ref")
        async with TestClient(TestServer(create_web_app(reference))) as redis_only:
            trending = await (await redis_only.get("/v1/films/trending?limit=100")).json()
            while requests.get(f"{url}/v1/films/trending?limit=100", timeout=10).json() != trending:
                assert time.monotonic() < deadline, "the worker never polled the live trending list"  # ~1 s
                await asyncio.sleep(0.2)
            for user in [*WATCHERS, *range(21, 60), 9_999]:
                path = f"/v1/users/{user}/recommendations?limit=10"
                expected = await whole_json(redis_only, path)
                body = requests.get(f"{url}{path}", timeout=10).json()
                assert body == expected, (user, body, expected)  # the worker reads no Redis for these
        after = redis_reads(url)
    assert after.get("none", 0) - before.get("none", 0) > 0, (before, after)  # table + memory: no round trip
