"""A two-level request-time bundle (`recs:{v}:ranking`) for bench/serve.py's synthetic versions.

The bench's films and item factors are random, so no history exists to train a ranker on. The
bundle is built the way serving uses one: a film snapshot (random shares, 1-2 of 20 genres per
film), 50 neighbours per film, the version's own item factors for fold-in, the four request-time
sources at depth 50, and a LightGBM LambdaRank ranker trained (early stopping, as in a retrain)
on the real request-time candidates and features of synthetic users, labels drawn from the ALS
and similar-to-recent ranks: real trees over the real feature layout, so `rank` costs what it
costs in production for a catalog of this size.
"""
from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from app.recsys.models.foldin import FoldInModel, gram
from app.recsys.ranking.candidates import union
from app.recsys.ranking.features import FILM_FEATURES, FilmSnapshot, assemble, feature_names, live_user_state
from app.recsys.ranking.online import RequestRanker
from app.recsys.ranking.ranker import Ranker

SOURCES = ("als", "popular", "trending", "recent")
DEPTH = 50
GENRES = 20
NEIGHBOURS = 50
TRAIN_USERS = 400
SPAN_S = 365 * 86_400.0


def synthetic_bundle(model: object, recent: int, now: float, rng: np.random.Generator) -> tuple[bytes, int]:
    """(`recs:{v}:ranking` bytes, the ranker's trees) over `model`'s films and item factors
    (the fields `pack_factors` reads); training users watched `recent` films each."""
    items, factors = model.items, np.asarray(model.item_factors, dtype=np.float32)  # type: ignore[attr-defined]
    films = len(items)
    values = rng.random((films, len(FILM_FEATURES))).astype(np.float32)
    values[:, FILM_FEATURES.index("i_viewers_share")] = (1.0 / np.arange(1, films + 1) ** 0.7)[rng.permutation(films)]
    genre_rows = np.repeat(np.arange(films), 2)
    genres = sp.csr_matrix((np.full(2 * films, 0.5, dtype=np.float32), (genre_rows, rng.integers(0, GENRES, 2 * films))),
                           shape=(films, GENRES))
    snapshot = FilmSnapshot(items, values, genres, now - 86_400.0, SPAN_S)
    neighbour_ids = rng.integers(0, films, (films, NEIGHBOURS))
    neighbours = sp.csr_matrix((np.tile(np.linspace(1.0, 0.1, NEIGHBOURS, dtype=np.float32), films),
                                (np.repeat(np.arange(films), NEIGHBOURS), neighbour_ids.ravel())), shape=(films, films))
    foldin = FoldInModel(items, factors, gram(factors), model.regularization, model.alpha)  # type: ignore[attr-defined]
    unranked = RequestRanker(None, snapshot, foldin, neighbours, SOURCES, DEPTH)  # type: ignore[arg-type]
    sources = unranked._sources  # noqa: SLF001 (the request-time sources, as `rank` builds them)
    blocks, labels, groups = [], [], []
    for _ in range(TRAIN_USERS):
        watched = (rng.permutation(films)[:recent] + 1).tolist()
        record = {"events": float(rng.integers(recent, 5 * recent)), "ratings": 0.0, "rating_sum": 0.0,
                  "last_seen": now - float(rng.uniform(0, 30 * 86_400))}
        candidates = union(sources, unranked.batch(watched), DEPTH)
        state = live_user_state(record, items.to_index(np.asarray(watched)), snapshot)
        blocks.append(assemble(candidates, snapshot, state, now))
        pull = np.exp(-candidates.ranks[:, 0] / 15.0) + np.exp(-candidates.ranks[:, 3] / 25.0)
        labels.append((rng.random(len(candidates)) < 0.12 * pull).astype(np.float32))
        groups.append(len(candidates))
    ranker = Ranker.train(np.vstack(blocks), np.concatenate(labels), np.array(groups), feature_names(SOURCES))
    bundle = RequestRanker(ranker, snapshot, foldin, neighbours, SOURCES, DEPTH)
    return bundle.pack(), ranker.stats.trees if ranker.stats else 0


def publish_bundle(conn: object, version: str, model: object, recent: int, rng: np.random.Generator) -> dict:
    """Write `recs:{v}:ranking` for a bench version; the meta fields naming it a two-level version."""
    from app.storage import redis_keys as keys

    started = time.perf_counter()
    raw, trees = synthetic_bundle(model, recent, time.time(), rng)
    conn.set(keys.ranking(version), raw)  # type: ignore[attr-defined]
    print(f"{version}: two-level bundle, {trees} trees, {len(raw) / 1e6:.1f} MB, "
          f"built in {time.perf_counter() - started:.1f} s", flush=True)
    return {"shipped": "two-level", "params": {"model": "two-level"}}


def write_counts(conn: object, users: list[int]) -> None:
    """The live counts the stats agent mirrors (`live:user:{id}`) of the users with recent plays."""
    from app.storage import redis_keys as keys

    pipe = conn.pipeline(transaction=False)  # type: ignore[attr-defined]
    now = time.time()
    for i, user in enumerate(users):
        pipe.set(keys.live_user(user), keys.encode_live_user(5 + i % 7, i % 3, 3.5 * (i % 3), now - 60 * (i % 500)))
    pipe.execute()
