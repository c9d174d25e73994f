"""Read-only debug views of one worker's stream state (operators; the multi-worker test).

Off unless DEBUG_VIEWS is set, and even then only for a bearer ADMIN_TOKEN
(app/web/auth.py): they show one user's recent films and ratings. With the
setting off the routes do not exist (404). They are Faust pages because they
read this worker's tables and partition assignment.

With several workers in one consumer group, each owns some partitions of
`{APP_ID}-user-batches` (partition p carries `interactions` partition p, see
agents/batches.py) and the table state of those partitions. These views answer
"what does THIS worker own and hold":

    GET /debug/partitions/           {"actives": [...], "standbys": [...]}  partitions of user-batches
    GET /debug/user-stats/{user_id}/ {"partition": p, "active": bool, "stats": {...}}; 404 if not held here

A user's partition is the one the site's key (`str(user_id)`) hashes to, as
Kafka's default partitioner places it; `active` says whether this worker owns
it now (else the stats are a standby copy, possibly behind).
"""
from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from faust.web import Request, Response, View

from app.main import app, settings
from app.web.auth import DEBUG
from app.web.handlers import bounded_int, echo
from app.web.openapi import MAX_ID
from tables.stats import user_stats

_partitioner = DefaultPartitioner()


def user_partition(user_id: int, partitions: int) -> int:
    """Partition of a user's events (key = str(user_id), docs/design.md "Data flow")."""
    every = list(range(partitions))
    return _partitioner(str(user_id).encode(), every, every)


def _source_partitions(tps: set) -> list[int]:
    return sorted(tp.partition for tp in tps if tp.topic == settings.user_batches_topic)


def _refused(web: View, request: Request) -> Response | None:
    """The 401/403 answer when the request lacks the admin token, else None."""
    denied = DEBUG.check(settings, request.headers.get("Authorization"))
    return None if denied is None else web.json(denied.body(), status=denied.status, headers=denied.headers())


async def partitions(web: View, request: Request) -> Response:
    """This worker's share of the consumer group."""
    if refused := _refused(web, request):
        return refused
    return web.json({"actives": _source_partitions(app.assignor.assigned_actives()),
                     "standbys": _source_partitions(app.assignor.assigned_standbys())})


async def user_stats_view(web: View, request: Request, user_id: str) -> Response:
    """One user's rolling stats as this worker's table holds them."""
    if refused := _refused(web, request):
        return refused
    uid = bounded_int(user_id, MAX_ID)
    if uid is None:
        return web.json({"error": f"user id must be a positive integer, got {echo(user_id)}"}, status=400)
    stats = user_stats.get(uid)
    if stats is None:
        return web.json({"error": f"no stats for user {uid} on this worker"}, status=404)
    partition = user_partition(uid, settings.topic_partitions)
    active = partition in _source_partitions(app.assignor.assigned_actives())
    return web.json({"partition": partition, "active": active, "stats": stats})


if settings.debug_views:
    app.page("/debug/partitions/")(partitions)
    app.page("/debug/user-stats/{user_id}/")(user_stats_view)
