"""Holdout splits of interactions into (train, test).

Two protocols: a global time T, everything after it is test (what the retrain
gate uses, it mimics serving the future: `grow_holdout` picks T, or
`time_holdout` a fixed number of days) and `per_user_last_fraction` (each
user's latest events: every user is evaluated, the usual MovieLens protocol
used by bench/quality.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from app.recsys.data.dataset import DAY_S, Dataset, Interactions, build_dataset


def holdout_start(interactions: Interactions, holdout_days: float) -> float:
    """T = latest event - holdout_days: events before T train, the rest test."""
    if holdout_days <= 0:
        raise ValueError(f"holdout_days must be > 0, got {holdout_days}")
    return interactions.max_ts - holdout_days * DAY_S


def time_holdout(interactions: Interactions, holdout_days: float) -> tuple[Interactions, Interactions]:
    """(train, test) split at `holdout_start`."""
    return interactions.split_by_time(holdout_start(interactions, holdout_days))


def per_user_last_fraction(interactions: Interactions, fraction: float = 0.2) -> tuple[Interactions, Interactions]:
    """(train, test): each user's last `fraction` of events by time (at least one) is test.

    Ties in time are broken by film id, so the split is deterministic.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    order = np.lexsort((interactions.film_id, interactions.ts, interactions.user_id))
    users = interactions.user_id[order]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    counts = np.diff(np.r_[starts, len(users)])
    n_test = np.maximum(1, np.floor(counts * fraction)).astype(np.int64)
    rank_from_end = np.repeat(starts + counts, counts) - np.arange(len(users))  # 1 = user's last event
    is_test = np.zeros(len(users), dtype=bool)
    is_test[order] = rank_from_end <= np.repeat(n_test, counts)
    return interactions.select(~is_test), interactions.select(is_test)


def last_share_by_time(interactions: Interactions, share: float = 0.1) -> tuple[Interactions, Interactions]:
    """(train, test): the globally newest `share` of the events (by count) is test (a forward-looking
    protocol; on an imported history it holds few users, which the benchmarks print)."""
    if not 0 < share < 1:
        raise ValueError(f"share must be in (0, 1), got {share}")
    return interactions.split_by_time(float(np.quantile(interactions.ts, 1 - share)))


def sample_users(interactions: Interactions, limit: int | None, seed: int = 0) -> Interactions:
    """The events of at most `limit` users, a fixed random sample (all events when fewer users)."""
    users = np.unique(interactions.user_id)
    if limit is None or len(users) <= limit:
        return interactions
    chosen = np.random.default_rng(seed).choice(users, size=limit, replace=False)
    return interactions.select(np.isin(interactions.user_id, chosen))


@dataclass(frozen=True)
class HoldoutCut:
    """Where a growing holdout starts and which rule stopped it (recorded with the run)."""

    start: float  # epoch seconds: events at or after it are held out
    rule: str  # "min_users" | "max_share" | "days"
    users: int  # users it can evaluate (seen before `start`, a new film from `start` on)
    share: float  # share of the events held out

    def as_dict(self) -> dict[str, object]:
        return {"start": self.start, "rule": self.rule, "users": self.users, "share": round(self.share, 6)}


def grow_holdout(dataset: Dataset, interactions: Interactions, min_users: int, max_share: float) -> HoldoutCut | None:
    """Move the holdout start back from the newest event until the holdout can evaluate
    `min_users` users or holds `max_share` of the events, whichever comes first.

    `dataset` is the whole window built from `interactions`. None when it is empty.
    """
    if min_users < 1 or not 0 < max_share < 1:
        raise ValueError("need min_users >= 1 and 0 < max_share < 1")
    if not dataset.matrix.nnz:
        return None
    all_ts = np.sort(interactions.ts)
    candidates = all_ts[np.r_[all_ts[1:] != all_ts[:-1], True]][::-1]  # distinct times, newest first
    evaluable, share = holdout_sizes(dataset, all_ts, candidates)
    enough_users, enough_events = evaluable >= min_users, share >= max_share
    stop = int(np.argmax(enough_users | enough_events))  # max_share < 1: the oldest candidate always stops
    rule = "min_users" if enough_users[stop] else "max_share"
    return HoldoutCut(float(candidates[stop]), rule, int(evaluable[stop]), float(share[stop]))


def fixed_holdout(dataset: Dataset, interactions: Interactions, holdout_days: float) -> HoldoutCut | None:
    """The holdout of the last `holdout_days` (`holdout_start`), sized like `grow_holdout`'s."""
    if not dataset.matrix.nnz:
        return None
    start = holdout_start(interactions, holdout_days)
    evaluable, share = holdout_sizes(dataset, np.sort(interactions.ts), np.array([start]))
    return HoldoutCut(start, "days", int(evaluable[0]), float(share[0]))


def holdout_sizes(dataset: Dataset, sorted_ts: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(users it can evaluate, share of the events) of the holdout starting at each of `starts`.

    A user counts at a start T when they have an event before T and a film
    first met at or after T (what `Holdout` evaluates: new films of known
    users; films new to the whole catalog are not told apart here). With f =
    a user's first event and m = the latest first contact with any of their
    films (from `dataset.first_ts`), that is f < T <= m: the count at every T
    is #(f < T) - #(m < T), all T at once.
    """
    indptr = dataset.matrix.indptr
    rows = indptr[np.flatnonzero(np.diff(indptr))]  # first stored pair of each user that has one
    first = np.sort(np.minimum.reduceat(dataset.first_ts, rows))
    latest_new = np.sort(np.maximum.reduceat(dataset.first_ts, rows))
    evaluable = np.searchsorted(first, starts, "left") - np.searchsorted(latest_new, starts, "left")
    share = 1.0 - np.searchsorted(sorted_ts, starts, "left") / max(len(sorted_ts), 1)
    return evaluable, share


@dataclass(frozen=True)
class LabelSplit:
    """A training part cut in two for a model that learns from what came next: first-level
    models fit on `stage`, the second level's labels come from `labels` (later, never overlapping).

    `as_of` is the time the stage's features are computed at: the cut for the time rule; for
    the per-user rule (no single cut) one second past the stage's newest event.
    """

    stage: Interactions
    labels: Interactions
    rule: str  # "time" | "per_user"
    as_of: float
    users: int  # users the label slice can teach (known in the stage, a new film in the slice)

    def as_dict(self) -> dict[str, object]:
        return {"rule": self.rule, "as_of": self.as_of, "users": self.users, "label_events": len(self.labels)}


LABEL_RULES = ("auto", "time", "per_user")


def label_split(train: Interactions, min_users: int, max_share: float = 0.2, fraction: float = 0.2,
                rule: str = "auto", target_users: int | None = None) -> LabelSplit:
    """Carve a later label slice out of `train` (the second level's labels, or a validation split).

    rule "time": the newest events, grown back from the newest until the slice can teach
    `target_users` users (default `min_users`) or holds `max_share` of the events (as the gate's
    holdout grows); "per_user": each user's last `fraction` of events (every user has labels, but
    users' slices interleave in time); "auto": the time slice when it teaches at least `min_users`,
    else per user. On an imported history a time slice holds a dozen users (users rate in one
    sitting): a ranker taught on them is noise, while per-user slices teach everyone.
    """
    if rule not in LABEL_RULES:
        raise ValueError(f"rule must be one of {LABEL_RULES}, got {rule!r}")
    if rule != "per_user":
        whole = build_dataset(train, None)
        target = max(min_users, target_users or 0)
        cut = grow_holdout(whole, train, target, max_share) if whole.matrix.nnz else None
        if cut is not None and (rule == "time" or cut.users >= min_users):
            stage, labels = train.split_by_time(cut.start)
            return LabelSplit(stage, labels, "time", cut.start, cut.users)
    stage, labels = per_user_last_fraction(train, fraction)
    return LabelSplit(stage, labels, "per_user", stage.max_ts + 1.0, _taught(stage, labels))


def _taught(stage: Interactions, labels: Interactions) -> int:
    """Users with events in `stage` and a film in `labels` they had no event with before."""
    known = build_dataset(stage, None)
    if not known.matrix.nnz:
        return 0
    later = build_dataset(labels, None, users=known.users, items=known.items).matrix
    new = later - later.multiply(known.matrix > 0)
    new.eliminate_zeros()
    return int((np.diff(new.tocsr().indptr) > 0).sum())
