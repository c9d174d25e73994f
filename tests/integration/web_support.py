"""Helpers of the web integration tests: publish a small model version to Redis
with the real publishing helpers (app.recsys.training.publish), and run the app."""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Iterable, Iterator

import numpy as np
import redis
from aiohttp.test_utils import TestClient, TestServer

from app.localstack import proc
from app.recsys.models.foldin import FoldInModel, pack_factors, unpack_factors
from app.recsys.data.idmap import IdMap
from app.recsys.training.publish import activate, write_ranked, write_titles
from app.settings import REPO_ROOT, Settings
from app.storage import redis_keys as keys
from app.web.server import create_web_app
from app.worker_process import free_port, settings_env

FILMS = np.arange(1, 31, dtype=np.int64)
UNTITLED_FILM = 30  # a film of the catalog without a title in `films:title`
WARM_USERS = np.array([1, 2, 3], dtype=np.int64)
LIST_LEN = 10


@dataclass(frozen=True)
class HandModel:
    """The fields `pack_factors` reads, with hand-made random factors."""

    items: IdMap
    item_factors: np.ndarray
    regularization: float = 0.1
    alpha: float = 10.0
    weight_scale: float = 1.0  # confidence normalisation (app.recsys.models.foldin): none for hand-made factors


@dataclass(frozen=True)
class Published:
    version: str
    user_recs: dict[int, list[int]]
    popular: list[int]
    foldin: FoldInModel
    meta: dict


def sync_redis(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)


def publish_version(conn: redis.Redis, version: str, seed: int, users: np.ndarray = WARM_USERS) -> Published:
    """A complete version (lists of `users`, similar lists, popular, factors, meta) made current."""
    rng = np.random.default_rng(seed)
    model = HandModel(IdMap(FILMS), rng.normal(size=(len(FILMS), 4)).astype(np.float32))
    scores_desc = np.linspace(1.0, 0.1, LIST_LEN, dtype=np.float32)
    recs = np.stack([rng.permutation(FILMS)[:LIST_LEN] for _ in users])
    write_ranked(conn, lambda u: keys.user_recs(version, u), users, recs, np.tile(scores_desc, (len(users), 1)))
    sim = model.item_factors @ model.item_factors.T
    np.fill_diagonal(sim, -np.inf)
    order = np.argsort(-sim, axis=1)[:, :LIST_LEN]
    write_ranked(conn, lambda f: keys.similar(version, f), FILMS, FILMS[order], np.take_along_axis(sim, order, 1))
    popular = rng.permutation(FILMS)[:20].tolist()
    conn.set(keys.popular(version), keys.encode_ranked(popular, np.linspace(100, 1, len(popular))))
    packed = pack_factors(model)
    conn.set(keys.factors(version), packed)
    write_titles(conn, {int(f): f"Film {f}" for f in FILMS if f != UNTITLED_FILM})
    meta = {"version": version, "trained_at": "2026-11-28T05:00:00Z", "metrics": {"ndcg@10": 0.123}}
    activate(conn, version, meta)
    return Published(
        version=version,
        user_recs={int(u): recs[i].tolist() for i, u in enumerate(users)},
        popular=popular,
        foldin=unpack_factors(packed),
        meta=json.loads(json.dumps(meta)),
    )


def set_trending(conn: redis.Redis, film_ids: list[int]) -> None:
    conn.set(keys.TRENDING, keys.encode_ranked(film_ids, [float(len(film_ids) - i) for i in range(len(film_ids))]))


def watched(conn: redis.Redis, user_id: int, film_ids: list[int]) -> None:
    """Recent watches as the stats agent mirrors them: newest first."""
    conn.lpush(keys.recent(user_id), *film_ids)


def served_redis(settings: Settings, seed: int, users: np.ndarray, watchers: Iterable[int]) -> redis.Redis:
    """Redis with version v1 (lists of `users`) current, trending set, and 1-5 recent watches
    of each of `watchers` (drawn from `seed`): what the in-memory serving tests start from."""
    conn = sync_redis(settings)
    publish_version(conn, "v1", seed=seed, users=users)
    set_trending(conn, [28, 29, 30, 1, 2])
    rng = np.random.default_rng(seed)
    for user in watchers:
        watched(conn, user, rng.choice(FILMS, size=int(rng.integers(1, 6))).tolist())
    return conn


async def running_client(settings: Settings, token: str | None = None) -> AsyncIterator[TestClient]:
    """The real app (same factory as `cinerec serve`) on a local port; with `token`,
    every request carries it as a bearer header."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with TestClient(TestServer(create_web_app(settings)), headers=headers) as client:
        yield client


@contextlib.contextmanager
def serve_process(settings: Settings, logfile: Path, *options: str) -> Iterator[str]:
    """`cinerec serve [options]` as a real process (own event loop, own port) with `settings`; yields its URL."""
    port = free_port()
    with open(logfile, "wb") as out:
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "cinerec"), "serve", "--port", str(port), *options],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **settings_env(settings)}, cwd=REPO_ROOT,
        )
    try:
        if not proc.wait_for(lambda: proc.port_open("127.0.0.1", port), 60, alive=lambda: server.poll() is None):
            raise RuntimeError(f"cinerec serve did not start; log:\n{proc.tail(logfile, 30)}")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


async def whole_json(client: TestClient, path: str, deadline_s: float = 60.0) -> dict:
    """The 200 body of `path`, asked again while it is degraded: on a loaded machine a Redis read can
    pass the request's 250 ms budget, and the degraded answer is legitimate but not the one under test."""
    deadline = time.monotonic() + deadline_s
    while True:
        response = await client.get(path)
        body = await response.json()
        assert response.status == 200, body
        if not body.get("degraded"):
            return body
        assert time.monotonic() < deadline, f"{path}: degraded until the deadline: {body}"
        await asyncio.sleep(0.1)


def raw_request(url: str, data: bytes, timeout: float = 10.0) -> tuple[int, bytes]:
    """Send `data` as is on a fresh connection (requests a client library would refuse to
    build: 10 KB request lines, control bytes in headers); the status code and the body."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(data)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body
