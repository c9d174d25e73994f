"""Request-time two-level ranking: users with recent plays that the published model has not seen.

The offline lists cover the users the model was trained on. A user who
arrived since gets, at request time, candidates from fold-in ALS (a user vector
solved from their recent plays against the published item factors), films
similar to their recent plays, popular and trending (the version's film
snapshot), ranked by the SAME ranker over the SAME features (`features.assemble`)
built from the version's film snapshot and the user's live state (the stats
agent's per-user mirror, `live:user:{id}`, and recent plays). An item-item source
(EASE or item-kNN, `ItemItemSource`) scores the newcomer's history, which is
their recent plays, with the same cut weight matrix as offline. Sources that need
a training row (the FM) propose nothing here and score NaN, as LightGBM's
missing value (the pipeline does not make them sources: docs/ranking.md).

`RequestRanker` is what a version publishes for this (`recs:{v}:ranking`, npz,
no pickle): ranker text model, film snapshot, item factors, similar-film
neighbours, the item-item sources' weight matrices. `rank` is pure and takes well under a few milliseconds (one fold-in
solve, one matrix-vector product over the films, ~150 candidates through the
trees); `explain=True` adds each film's top contributing features and sources
(LightGBM's SHAP values, summed per source).
"""
from __future__ import annotations

import functools
import io
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping, NamedTuple, Sequence

import numpy as np
import scipy.sparse as sp

from app.recsys.data.idmap import IdMap
from app.recsys.models.foldin import FoldInModel, gram
from app.recsys.models.topn import mark_ranked
from app.recsys.ranking.candidates import (POPULAR, RECENT, TRENDING, Candidates, CandidateSource, FactorSource,
                                           ItemItemSource, ItemScoreSource, NeighbourSource, OneUser, UserBatch,
                                           union_one)
from app.recsys.ranking.features import FilmSnapshot, UserStates, assemble, live_user_state
from app.recsys.ranking.history import recent_entries
from app.recsys.ranking.ranker import Ranker

if TYPE_CHECKING:  # twolevel imports this module (to save the bundle with the model)
    from app.recsys.ranking.twolevel import TwoLevelRecommender

EXPLAIN_TOP = 3


class Contribution(NamedTuple):
    """One reason a film ranks where it does: a feature or a first-level source, and how much it added."""

    name: str
    value: float


class RankedFilms(NamedTuple):
    """A request-time two-level list: film ids best first, ranker scores, and (explain) the reasons."""

    film_ids: list[int]
    scores: list[float]
    reasons: list[list[Contribution]] | None = None


class _Unavailable:
    """A first-level source that needs a training row (e.g. the FM): nothing at request time."""

    def __init__(self, name: str) -> None:
        self.name = name

    def top(self, batch: UserBatch, n: int) -> tuple[np.ndarray, np.ndarray]:
        return np.full((len(batch), n), -1, dtype=np.int64), np.full((len(batch), n), -np.inf, dtype=np.float32)

    def score(self, batch: UserBatch, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
        return np.full(len(rows), np.nan, dtype=np.float32)

    def top_one(self, user: OneUser, n: int) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)

    def score_one(self, user: OneUser, items: np.ndarray) -> np.ndarray:
        return np.full(len(items), np.nan, dtype=np.float32)


@dataclass(frozen=True, eq=False)
class RequestRanker:
    """One version's request-time ranking state (film maps shared by every part)."""

    ranker: Ranker
    snapshot: FilmSnapshot
    foldin: FoldInModel
    neighbours: sp.csr_matrix
    sources: tuple[str, ...]  # in the ranker's order (what the offline first level had)
    n: int  # candidates per source
    item_item: Mapping[str, sp.csr_matrix] = field(default_factory=dict)  # item-item sources' W, by name

    @classmethod
    def of(cls, model: TwoLevelRecommender) -> RequestRanker:
        """From a fitted two-level model (`twolevel.TwoLevelRecommender`)."""
        first = model.first
        if first.als is None:
            raise ValueError("request-time ranking needs the model's ALS source (fold-in)")
        recent = next((s for s in first.sources if isinstance(s, NeighbourSource)), None)
        neighbours = recent.neighbours if recent is not None else sp.csr_matrix((len(model.items),) * 2)
        als = first.als
        return cls(model.ranker, first.snapshot,
                   FoldInModel(model.items, als.item_factors, als.gram, als.regularization, als.confidence_scale),
                   neighbours.tocsr(), first.source_names, model.config.n_candidates,
                   {s.name: s.neighbours for s in first.sources if isinstance(s, ItemItemSource)})

    @functools.cached_property
    def _sources(self) -> list[CandidateSource]:
        """Built once per version (the neighbour matrix is copied, the popular and trending orders
        sorted): a request reuses them. `rank` is not thread-safe: `NeighbourSource` keeps its
        last batch's product."""
        by_name: dict[str, CandidateSource] = {
            "als": FactorSource("als", self.foldin.item_factors),
            POPULAR: ItemScoreSource(POPULAR, self.snapshot.viewers_share),
            TRENDING: ItemScoreSource(TRENDING, self.snapshot.trend),
            RECENT: NeighbourSource(RECENT, self.neighbours),
            **{name: ItemItemSource(name, weights) for name, weights in self.item_item.items()},
        }
        return [by_name.get(name) or _Unavailable(name) for name in self.sources]

    def user(self, recent: Sequence[int], exclude: Sequence[int] = (), vector: np.ndarray | None = None) -> OneUser:
        """The one user to rank: `recent` film ids newest first (repeats = watched again), films in
        `exclude` never proposed; `vector` = the user's ALS vector if the caller has one, else folded in."""
        items = self.snapshot.items
        recent_idx = items.to_index(np.asarray(recent, dtype=np.int64))
        if vector is None:
            counts = Counter(int(f) for f in recent)
            vector = self.foldin.user_vector(np.array(list(counts), dtype=np.int64),
                                             np.array(list(counts.values()), dtype=np.float64))
        excluded = np.unique(np.concatenate([recent_idx, items.to_index(np.asarray(exclude, dtype=np.int64))]))
        films, weights = recent_entries(recent_idx)
        return OneUser(seen=excluded[excluded >= 0],
                       vector=None if vector is None else np.ascontiguousarray(np.atleast_2d(vector), np.float32),
                       recent=films, weights=weights)

    def batch(self, recent: Sequence[int], exclude: Sequence[int] = (),
              vector: np.ndarray | None = None) -> UserBatch:
        """`user` as a batch of one (the batch path: `union`, what the offline ranking uses)."""
        return self.user(recent, exclude, vector).batch(len(self.snapshot.items))

    def rank(self, recent: Sequence[int], record: Mapping[str, float] | None, now: float, limit: int,
             exclude: Sequence[int] = (), vector: np.ndarray | None = None, explain: bool = False) -> RankedFilms:
        """The user's top `limit` films (see `user` for the inputs; `record` = the live per-user mirror):
        `union_one`, the one-user path (the same candidates as `union` of `batch`)."""
        candidates = union_one(self._sources, self.user(recent, exclude, vector), self.n)
        return rank_candidates(self.ranker, candidates, self.state(recent, record), self.snapshot, now, limit,
                               explain)

    def state(self, recent: Sequence[int], record: Mapping[str, float] | None) -> UserStates:
        """The user's features' state: live counts and recent films."""
        return live_user_state(record, self.snapshot.items.to_index(np.asarray(recent, dtype=np.int64)),
                               self.snapshot)

    def pack(self) -> bytes:
        """npz bytes for `recs:{v}:ranking` (no pickle)."""
        model, meta = self.ranker.to_strings()
        buf = io.BytesIO()
        nb = self.neighbours
        item_item = {f"ii{i}_{part}": getattr(weights, part) for i, weights in enumerate(self.item_item.values())
                     for part in ("data", "indices", "indptr")}
        np.savez(buf, ranker_model=np.frombuffer(model.encode(), dtype=np.uint8),
                 ranker_meta=np.frombuffer(meta.encode(), dtype=np.uint8),
                 snapshot=np.frombuffer(self.snapshot.pack(), dtype=np.uint8),
                 item_factors=self.foldin.item_factors, regularization=np.float64(self.foldin.regularization),
                 confidence=np.float64(self.foldin.alpha), nb_data=nb.data, nb_indices=nb.indices, nb_indptr=nb.indptr,
                 sources=np.array(self.sources), n=np.int64(self.n),
                 item_item_names=np.array(list(self.item_item), dtype=str), **item_item)
        return buf.getvalue()

    @classmethod
    def unpack(cls, raw: bytes) -> RequestRanker:
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            ranker = Ranker.from_strings(z["ranker_model"].tobytes().decode(), z["ranker_meta"].tobytes().decode())
            snapshot = FilmSnapshot.unpack(z["snapshot"].tobytes())
            factors = z["item_factors"].astype(np.float32)
            items: IdMap = snapshot.items
            if len(factors) != len(items):
                raise ValueError(f"{len(factors)} item factors for {len(items)} films")
            foldin = FoldInModel(items, factors, gram(factors), float(z["regularization"]), float(z["confidence"]))
            neighbours = sp.csr_matrix((z["nb_data"], z["nb_indices"], z["nb_indptr"]), shape=(len(items),) * 2)
            item_item = {str(name): sp.csr_matrix((z[f"ii{i}_data"], z[f"ii{i}_indices"], z[f"ii{i}_indptr"]),
                                                  shape=(len(items),) * 2)
                         for i, name in enumerate(z["item_item_names"])} if "item_item_names" in z else {}
            return cls(ranker, snapshot, foldin, neighbours, tuple(str(s) for s in z["sources"]), int(z["n"]),
                       item_item)


def rank_candidates(ranker: Ranker, candidates: Candidates, state: UserStates, snapshot: FilmSnapshot, now: float,
                    limit: int, explain: bool = False) -> RankedFilms:
    """One user's candidates, scored by the ranker over `assemble`'s features, best `limit` first."""
    features = assemble(candidates, snapshot, state, now)
    scores = ranker.predict(features)
    order = np.argsort(-scores, kind="stable")[:limit]  # `top_per_row` of one row: ties to the smaller film
    ids, top_scores = mark_ranked(candidates.items[order], scores[order], limit)
    keep = ids >= 0
    chosen = ids[keep]
    film_ids = snapshot.items.to_external(chosen).tolist()
    reasons = None
    if explain and len(chosen):
        position = np.searchsorted(candidates.items, chosen)  # one user: pairs are sorted by film
        reasons = explain_rows(ranker, features[position])
    return RankedFilms(film_ids, top_scores[keep].tolist(), reasons)


def explain_rows(ranker: Ranker, features: np.ndarray, top: int = EXPLAIN_TOP) -> list[list[Contribution]]:
    """Per row, the `top` features or first-level sources that raised its score most (SHAP values;
    a source's score and rank count together, under the source's name)."""
    contributions = ranker.contributions(features)
    groups: dict[str, list[int]] = {}
    for j, name in enumerate(ranker.features):
        key = f"source:{name[2:]}" if name[:2] in ("s_", "r_") else name
        groups.setdefault(key, []).append(j)
    names = list(groups)
    summed = np.column_stack([contributions[:, cols].sum(axis=1) for cols in groups.values()])
    out = []
    for row in summed:
        best = np.argsort(-row)[:top]
        out.append([Contribution(names[j], round(float(row[j]), 4)) for j in best if row[j] > 0])
    return out
