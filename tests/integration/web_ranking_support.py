"""A two-level version for the web tests: a real (small) two-level model published with the real
helpers, its request-time bundle (`recs:{v}:ranking`) included, and the stats agent's mirror of a
newcomer (recent plays and live counts)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import redis

from app.recsys.models.foldin import pack_factors
from app.recsys.ranking.online import RequestRanker
from app.recsys.ranking.twolevel import TwoLevelRecommender
from app.recsys.training.publish import activate, write_ranked, write_titles
from app.storage import redis_keys as keys
from tests.app.recsys.conftest import planted_interactions, small_two_level

WARM_USERS = np.array([1, 2, 3, 4, 5, 6], dtype=np.int64)  # training users: their precomputed lists


@dataclass(frozen=True)
class TwoLevelVersion:
    version: str
    model: TwoLevelRecommender
    bundle: bytes  # recs:{v}:ranking as published

    @property
    def ranker(self) -> RequestRanker:
        """What the web unpacks, unpacked anew."""
        return RequestRanker.unpack(self.bundle)


def fit_two_level() -> TwoLevelRecommender:
    """The planted world of the model tests (films 1000-1099 in four taste groups of 25)."""
    return small_two_level(planted_interactions(n_groups=4, users_per_group=50, events_per_user=14))


def publish_two_level(conn: redis.Redis, version: str, model: TwoLevelRecommender, switch: bool = True,
                      with_bundle: bool = True) -> TwoLevelVersion:
    """The version as a retrain publishes a shipped two-level model (`with_bundle=False`: as a
    single model over the same factors, i.e. no request-time bundle)."""
    users = model.users.to_index(WARM_USERS)
    recs, scores = model.recommend(users, 10)
    write_ranked(conn, lambda u: keys.user_recs(version, u), WARM_USERS, model.items.to_external(recs), scores)
    als = model.first.als
    conn.set(keys.factors(version), pack_factors(als))
    films = model.items.external
    conn.set(keys.popular(version), keys.encode_ranked(films[:20], np.linspace(20, 1, 20)))
    write_titles(conn, {int(f): f"Film {f}" for f in films})
    bundle = RequestRanker.of(model).pack()
    name = "two-level" if with_bundle else "als"
    if with_bundle:
        conn.set(keys.ranking(version), bundle)
    activate(conn, version, {"version": version, "shipped": name, "params": {"model": name},
                             "trained_at": "2026-12-02T00:00:00Z"}, switch=switch)
    return TwoLevelVersion(version, model, bundle)


def newcomer(conn: redis.Redis, user_id: int, recent: list[int], counts: Mapping[str, float] | None) -> None:
    """What the stats agent mirrors of a user: recent plays (newest first) and their live counts."""
    conn.delete(keys.recent(user_id), keys.live_user(user_id))
    conn.rpush(keys.recent(user_id), *recent)
    if counts is not None:
        conn.set(keys.live_user(user_id), keys.encode_live_user(**counts))
