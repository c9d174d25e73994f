"""`/v1/admin/experiments`: the experiments of `cinerec experiment` over HTTP, behind ADMIN_TOKEN.

    GET  /v1/admin/experiments                     every experiment, and the one serving follows
    POST /v1/admin/experiments                     plan and start one (JSON body, below)
    GET  /v1/admin/experiments/{id}                one, its decision log and its report
    POST /v1/admin/experiments/{id}/stop           stop it by hand (optional {"reason": ...})

Thin: the body is checked field by field (a 400 names the field), then the
same functions as the CLI run (app.experiments.operations) in a thread, each
call bounded by ANALYTICS_TIMEOUT_S (ClickHouse and Redis clients have their
own network timeouts). Domain errors map to 4xx: a refused definition 400,
an unknown experiment 404, a clash with what runs or is stored 409; a
service down 503, too slow 504. Starting is idempotent: the same POST again
answers the running experiment.
"""
from __future__ import annotations

import asyncio
import logging
import re
from datetime import datetime
from typing import Any, Callable, TypeVar

import orjson
import redis
from aiohttp import web
from clickhouse_driver import Client
from clickhouse_driver.errors import Error as ClickHouseError

from app.experiments import operations, store
from app.experiments.metrics import DEFAULT_PRIMARY, METRICS
from app.experiments.model import DEFAULT_GUARDRAILS, DEFAULT_MDE, DEFAULT_SHARE, Guardrail, InvalidExperiment, check_id
from app.storage.clickhouse import client
from app.storage.redis_client import connect
from app.web import auth, metrics
from app.web.handlers import error, json_response
from app.web.keys import SETTINGS
from app.web.openapi import MAX_REASON_LEN, MAX_VERSION_LEN

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_GUARDRAILS = len(METRICS)
# RFC 3339 date-time (what the OpenAPI `date-time` format means), with its zone.
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,6})?([Zz]|[+-]\d{2}:\d{2})")


class BadRequest(ValueError):
    """A request body we cannot use; the message names the field."""


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def _check_fields(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise BadRequest(f"unknown field(s) {', '.join(map(repr, unknown))}; known: {', '.join(sorted(allowed))}")


def _string(body: dict[str, Any], name: str, max_len: int, required: bool = False) -> str | None:
    """An optional field is absent (None), never null: null is refused like any other wrong type."""
    if name not in body and not required:
        return None
    value = body.get(name)
    if not isinstance(value, str) or not 1 <= len(value) <= max_len:
        raise BadRequest(f"'{name}' must be a string of 1..{max_len} characters")
    return value


def _number(body: dict[str, Any], name: str, default: float, low: float, high: float, *, integer: bool = False,
            open_low: bool = True, open_high: bool = False) -> Any:
    """`body[name]` (`default` when absent) within (low, high] by default (bounds open or closed
    as asked); not a bool, not null."""
    value = body[name] if name in body else default
    kinds = (int,) if integer else (int, float)
    if value is None or isinstance(value, bool) or not isinstance(value, kinds) or not (
            (low < value if open_low else low <= value) and (value < high if open_high else value <= high)):
        left, right = "(" if open_low else "[", ")" if open_high else "]"
        raise BadRequest(f"'{name}' must be {'an integer' if integer else 'a number'} in {left}{low:g}, {high:g}{right}")
    return value


def _guardrails(body: dict[str, Any]) -> tuple[Guardrail, ...]:
    if "guardrails" not in body:
        return DEFAULT_GUARDRAILS
    value = body["guardrails"]
    if not isinstance(value, list) or len(value) > MAX_GUARDRAILS:
        raise BadRequest(f"'guardrails' must be a list of at most {MAX_GUARDRAILS} {{'metric', 'tolerance'}} objects")
    out = []
    for item in value:
        if not isinstance(item, dict) or set(item) != {"metric", "tolerance"} or not isinstance(item["metric"], str):
            raise BadRequest("each guardrail must be an object {'metric': name, 'tolerance': number in [0, 1)}")
        tolerance = _number(item, "tolerance", 0.0, 0.0, 1.0, open_low=False, open_high=True)
        out.append(Guardrail(item["metric"], float(tolerance)))
    return tuple(out)


def _start_time(body: dict[str, Any]) -> datetime:
    if "at" not in body:
        return operations.now()
    value = body["at"]
    if not isinstance(value, str) or not _DATE_TIME.fullmatch(value):
        raise BadRequest("'at' must be an RFC 3339 date-time with its zone, e.g. 2026-12-01T00:00:00Z")
    try:
        return datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"'at' is not a valid date-time: {value!r}") from None


START_FIELDS = {"challenger", "control", "id", "share", "primary", "guardrails", "mde", "min_users_per_arm",
                "plan_days", "max_days", "at"}


def parse_start(body: dict[str, Any]) -> dict[str, Any]:
    """The start request's arguments (`operations.new_plan`'s, plus `min_users` and `plan_days`)."""
    _check_fields(body, START_FIELDS)
    primary = body.get("primary", DEFAULT_PRIMARY)
    if not isinstance(primary, str):
        raise BadRequest("'primary' must be a metric name")
    experiment_id = check_id(body["id"]) if "id" in body else None
    return {
        "challenger": _string(body, "challenger", MAX_VERSION_LEN, required=True),
        "control": _string(body, "control", MAX_VERSION_LEN),
        "experiment_id": experiment_id,
        "share": float(_number(body, "share", DEFAULT_SHARE, 0.0, 1.0, open_high=True)),
        "primary": primary,
        "guardrails": _guardrails(body),
        "mde": float(_number(body, "mde", DEFAULT_MDE, 0.0, 1.0, open_high=True)),
        "min_users": _number(body, "min_users_per_arm", None, 1, operations.MAX_MIN_USERS, integer=True,
                             open_low=False) if "min_users_per_arm" in body else None,
        "plan_days": _number(body, "plan_days", operations.PLAN_DAYS, 1, operations.MAX_PLAN_DAYS, integer=True,
                             open_low=False),
        "max_days": float(_number(body, "max_days", operations.DEFAULT_MAX_DAYS, 0.0, operations.MAX_DAYS)),
        "at": _start_time(body),
    }


async def _run(request: web.Request, work: Callable[[Client, redis.Redis], T]) -> T:
    """`work(ClickHouse, Redis)` in a thread on fresh clients, bounded by ANALYTICS_TIMEOUT_S."""
    settings = request.app[SETTINGS]

    def call() -> T:
        ch, r = client(settings), connect(settings)
        try:
            return work(ch, r)
        finally:
            ch.disconnect()
            r.close()

    return await asyncio.wait_for(asyncio.to_thread(call), settings.analytics_timeout_s)


def _answer(status: int) -> Callable[[Callable[[web.Request], Any]], Callable[[web.Request], Any]]:
    """Run a handler's domain call and map what it raises to a JSON error."""

    def wrap(handler: Callable[[web.Request], Any]) -> Callable[[web.Request], Any]:
        async def answer(request: web.Request) -> web.Response:
            try:
                return json_response(await handler(request), status=status)
            except (BadRequest, InvalidExperiment) as exc:
                return error(400, str(exc))
            except store.NotFound as exc:
                return error(404, str(exc))
            except store.Conflict as exc:
                return error(409, str(exc))
            except asyncio.TimeoutError:
                return error(504, "ClickHouse or Redis did not answer in time")
            except (ClickHouseError, redis.RedisError, OSError) as exc:
                log.warning("experiments API: %s: %s", type(exc).__name__, exc)
                return error(503, f"ClickHouse or Redis unavailable: {type(exc).__name__}")

        answer.__name__, answer.__doc__ = handler.__name__, handler.__doc__
        return answer

    return wrap


@_answer(200)
async def list_experiments(request: web.Request) -> dict[str, Any]:
    """Every experiment, newest first, and the id of the one serving follows."""
    return await _run(request, operations.overview)


@_answer(201)
async def start_experiment(request: web.Request) -> dict[str, Any]:
    """Plan and start an experiment (the control defaults to the served version)."""
    args = parse_start(await _body(request))

    def work(ch: Client, r: redis.Redis) -> dict[str, Any]:
        plan = operations.new_plan(
            args["challenger"], args["control"] or operations.served_version(r), args["at"], args["experiment_id"],
            share=args["share"], primary=args["primary"], guardrails=args["guardrails"], mde=args["mde"],
            max_days=args["max_days"],
        )
        running, note = operations.start(ch, r, plan, args["min_users"], args["plan_days"])
        return {"experiment": running.to_json(), "plan": note}

    return await _run(request, work)


@_answer(200)
async def experiment_details(request: web.Request) -> dict[str, Any]:
    """One experiment, its decision log and its report so far."""
    experiment_id = check_id(request.match_info["experiment_id"])
    return await _run(request, lambda ch, r: operations.details(ch, experiment_id))


@_answer(200)
async def stop_experiment(request: web.Request) -> dict[str, Any]:
    """Stop a planned or running experiment by hand: the control stays served."""
    experiment_id = check_id(request.match_info["experiment_id"])
    body = await _body(request)
    _check_fields(body, {"reason"})
    reason = _string(body, "reason", MAX_REASON_LEN) or "stopped by hand"
    stopped = await _run(request, lambda ch, r: operations.stop(ch, r, experiment_id, reason))
    return {"experiment": stopped.to_json()}


ROUTES = (
    ("GET", "/v1/admin/experiments", list_experiments),
    ("POST", "/v1/admin/experiments", start_experiment),
    ("GET", "/v1/admin/experiments/{experiment_id}", experiment_details),
    ("POST", "/v1/admin/experiments/{experiment_id}/stop", stop_experiment),
)


def setup_routes(app: web.Application) -> None:
    """Add the experiment routes (admin token; counted and timed like the other routes)."""
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, metrics.instrumented(path, auth.protected(auth.ADMIN, handler)))
