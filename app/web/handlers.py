"""Thin HTTP handlers: parse and validate input, call the Reader, shape JSON.

Bad input is a 400 with a JSON `{"error": ...}` body, an unknown film a 404,
never a 500. Domain state lives in `request.app[...]` (opened in app/web/server.py).
"""
from __future__ import annotations

import os
from typing import Any

import orjson
from aiohttp import web

from app.web import admin, health, metrics
from app.web.keys import CELERY, LOADER_PROGRESS, READER, REDIS_PROBE, SETTINGS
from app.web.openapi import DEFAULT_LIMIT, MAX_ID, MAX_LIMIT, SPEC
from app.web.reader import Answer, NoModel, UnknownFilm


class BadRequest(ValueError):
    """Client input we cannot use; the message goes into the 400 body."""


def json_response(body: dict[str, Any], status: int = 200) -> web.Response:
    """orjson: ~1 us for a 10-film answer where json.dumps takes ~10 us (docs/serving.md)."""
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def error(status: int, message: str) -> web.Response:
    return json_response({"error": message}, status=status)


ECHO_MAX = 100


def echo(value: str, limit: int = ECHO_MAX) -> str:
    """`value` quoted for an error message, cut to about `limit` characters (escapes
    count): a 5,000-digit id must not come back whole, nor fill the logs."""
    text = repr(value[: limit + 1])
    if len(text) <= limit + 2:  # the whole value, quoted
        return text
    return f"{text[:limit]}... ({len(value)} characters)"


def bounded_int(raw: str, maximum: int) -> int | None:
    """`raw` as an int in 1..maximum, else None (ASCII digits only: no '+1', ' 1', '²', 10**5000)."""
    if not (raw.isascii() and raw.isdigit()) or len(raw) > len(str(maximum)):
        return None
    value = int(raw)
    return value if 1 <= value <= maximum else None


def parse_id(request: web.Request, name: str) -> int:
    raw = request.match_info[name]
    value = bounded_int(raw, MAX_ID)
    if value is None:
        raise BadRequest(f"{name} must be a positive integer below 2**63, got {echo(raw)}")
    return value


def parse_limit(request: web.Request) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    value = bounded_int(raw, MAX_LIMIT)
    if value is None:
        raise BadRequest(f"limit must be an integer in 1..{MAX_LIMIT}, got {echo(raw)}")
    return value


def parse_optional_user(request: web.Request) -> int | None:
    """The `user_id` query parameter (picks the user's experiment arm), None when absent."""
    raw = request.query.get("user_id")
    if raw is None:
        return None
    value = bounded_int(raw, MAX_ID)
    if value is None:
        raise BadRequest(f"user_id must be a positive integer below 2**63, got {echo(raw)}")
    return value


EXPLAIN = {"0": False, "false": False, "1": True, "true": True}


def parse_explain(request: web.Request) -> bool:
    """The `explain` flag (absent = off)."""
    raw = request.query.get("explain")
    if raw is None:
        return False
    value = EXPLAIN.get(raw)
    if value is None:
        raise BadRequest(f"explain must be one of {', '.join(EXPLAIN)}, got {echo(raw)}")
    return value


def answer_body(answer: Answer) -> dict[str, Any]:
    items = [{"film_id": f, "score": s, "title": t} for f, s, t in zip(answer.film_ids, answer.scores, answer.titles)]
    if answer.reasons is not None:
        for item, reasons in zip(items, answer.reasons):
            item["reasons"] = reasons
    body: dict[str, Any] = {"items": items, "source": answer.source, "model_version": answer.version}
    if answer.stage is not None:  # recommendations: which model and which of its stages answered
        body["model"], body["stage"] = answer.model, answer.stage
    if answer.experiment is not None:  # echoed by the site in its events, like model_version
        body["experiment"], body["arm"] = answer.experiment, answer.arm
    if answer.degraded:
        body["degraded"] = True
    return body


async def recommendations(request: web.Request) -> web.Response:
    """Top films for a user: precomputed, ranked at request time (two-level), folded-in, or
    trending/popular for unknown users; `explain=1` says per film what put it there."""
    try:
        user_id, limit, explain = parse_id(request, "user_id"), parse_limit(request), parse_explain(request)
    except BadRequest as exc:
        return error(400, str(exc))
    answer = await request.app[READER].recommend(user_id, limit, explain)
    metrics.count_recommendation(answer.source, answer.degraded, answer.redis_reads)
    return json_response({"user_id": user_id, **answer_body(answer)})


async def similar(request: web.Request) -> web.Response:
    """Films similar to a film (item-item from the served model, or from the `user_id`'s experiment arm)."""
    try:
        film_id, limit, user_id = parse_id(request, "film_id"), parse_limit(request), parse_optional_user(request)
    except BadRequest as exc:
        return error(400, str(exc))
    try:
        answer = await request.app[READER].similar(film_id, limit, user_id)
    except UnknownFilm as exc:
        return error(404, str(exc))
    except NoModel as exc:
        return error(503, str(exc))
    return json_response({"film_id": film_id, **answer_body(answer)})


def film_list(source: str) -> metrics.Handler:
    """Handler serving the in-process `popular` or `trending` list."""

    async def handler(request: web.Request) -> web.Response:
        try:
            limit = parse_limit(request)
        except BadRequest as exc:
            return error(400, str(exc))
        return json_response(answer_body(await request.app[READER].films(source, limit)))

    handler.__name__ = source
    handler.__doc__ = f"The {source} films."
    return handler


async def current_model(request: web.Request) -> web.Response:
    """The served version and its offline metrics (from `recs:{v}:meta`)."""
    cache = request.app[READER].cache
    snap = cache.snapshot
    if snap.version is None:
        return error(503, "no model version has been published yet")
    meta = dict(snap.meta)
    body = {**meta, "version": snap.version, "trained_at": meta.get("trained_at")}
    if not cache.redis_ok:
        body["degraded"] = True
    return json_response(body)


async def retrain(request: web.Request) -> web.Response:
    """Enqueue a retrain now (behind the ADMIN_TOKEN policy, app/web/server.py)."""
    try:
        task_id = await admin.enqueue_retrain(request.app[CELERY], request.app[SETTINGS].celery_broker_url)
    except admin.BrokerUnavailable as exc:
        return error(503, str(exc))
    return json_response({"task_id": task_id, "task": admin.RETRAIN_TASK, "queue": admin.RETRAIN_QUEUE}, status=202)


async def alive(request: web.Request) -> web.Response:
    """Liveness: the process answers HTTP (which one, with `cinerec serve --processes N`)."""
    return json_response({"status": "ok", "pid": os.getpid()})


async def ready(request: web.Request) -> web.Response:
    """Readiness: Kafka, ClickHouse, Redis reachable and a model published; 503 says which failed."""
    ok, checks = await health.run_checks(request.app[SETTINGS], request.app[REDIS_PROBE],
                                         request.app.get(LOADER_PROGRESS))
    return json_response({"ready": ok, "checks": checks}, status=200 if ok else 503)


async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3 description of this service."""
    return json_response(SPEC)
