"""The web side of request-time two-level ranking (app/recsys/ranking/online.py): loading a
version's `RequestRanker` once, and naming where each film of an answer came from.

A two-level version publishes `recs:{v}:ranking` (ranker, film snapshot, item
factors, similar films). The model cache unpacks it once per version, in a
thread like the fold-in factors, so that a request pays only `rank` itself; a
version without the key (a single model shipped) or with one that does not
decode keeps the fold-in path. LightGBM is imported only when a version has a
bundle: a server of single models never loads it.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from app.recsys.ranking.online import Contribution, RequestRanker

log = logging.getLogger(__name__)

Explained = list[list[dict[str, Any]]]  # per film: [{"name": ..., "value": ...}, ...]


def load_request_ranker(raw: bytes | None, version: str) -> RequestRanker | None:
    """Decode `recs:{v}:ranking` and rank once (LightGBM's first prediction allocates: not a
    request's cost); None when absent or unreadable."""
    if not raw:
        return None
    try:
        from app.recsys.ranking.online import RequestRanker

        ranker = RequestRanker.unpack(raw)
        snapshot = ranker.snapshot
        if len(snapshot.items):
            ranker.rank([int(snapshot.items.external[0])], None, snapshot.as_of, 1, explain=True)
        return ranker
    except Exception:  # a broken bundle must not stop serving the rest of the version
        log.exception("cannot load the request-time ranker of version %s; its new users get fold-in", version)
        return None


def explain_items(film_ids: list[int], ranked: Mapping[int, list[Contribution]], head: tuple[str, list[int]],
                  *fallbacks: tuple[str, list[int]]) -> Explained:
    """`explain=1`: per film of an answer, what put it there. A film ranked at request time: its top
    SHAP contributions (`ranked`: film -> reasons; a source's score and rank count as `source:<name>`).
    Any other film: the list it was taken from, `list:<name>` without a value, the first of
    `head` (e.g. ("precomputed", its films)) then `fallbacks` (("trending", ...), ("popular", ...))
    that holds it: a precomputed list's films carry no per-feature contributions in serving."""
    lists = [(name, set(ids)) for name, ids in (head, *fallbacks)]
    out: Explained = []
    for film_id in film_ids:
        reasons = ranked.get(film_id)
        if reasons is not None:
            out.append([{"name": r.name, "value": r.value} for r in reasons])
        else:
            name = next((name for name, ids in lists if film_id in ids), lists[-1][0])
            out.append([{"name": f"list:{name}", "value": None}])
    return out
