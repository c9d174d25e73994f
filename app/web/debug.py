"""Read-only debug views of one worker's stream state (operators; the multi-worker test).

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
from tables.stats import user_stats

_partitioner = DefaultPartitioner()


def user_partition(user_id: int, partitions: int) -> int:
    """Partition of a user's events (key = str(user_id), docs/design.md "Data flow")."""
    every = list(range(partitions))
    return _partitioner(str(user_id).encode(), every, every)


def _source_partitions(tps: set) -> list[int]:
    return sorted(tp.partition for tp in tps if tp.topic == settings.user_batches_topic)


@app.page("/debug/partitions/")
async def partitions(web: View, request: Request) -> Response:
    """This worker's share of the consumer group."""
    return web.json({"actives": _source_partitions(app.assignor.assigned_actives()),
                     "standbys": _source_partitions(app.assignor.assigned_standbys())})


@app.page("/debug/user-stats/{user_id}/")
async def user_stats_view(web: View, request: Request, user_id: str) -> Response:
    """One user's rolling stats as this worker's table holds them."""
    try:
        uid = int(user_id)
    except ValueError:
        return web.json({"error": f"user id must be an integer, got {user_id!r}"}, status=400)
    stats = user_stats.get(uid)
    if stats is None:
        return web.json({"error": f"no stats for user {uid} on this worker"}, status=404)
    partition = user_partition(uid, settings.topic_partitions)
    active = partition in _source_partitions(app.assignor.assigned_actives())
    return web.json({"partition": partition, "active": active, "stats": stats})
