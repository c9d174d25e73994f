"""The metrics an experiment compares, defined once (names, per-user columns, method).

Every compared metric is `sum(numerator) / sum(denominator)` over the users of
an arm, both taken from the per-user table of `app.experiments.analysis`:
- per-user means ("per user-day", retention) have a denominator of 1 per user
  (or 0/1 eligibility): their interval comes from a bootstrap over users;
- ratio metrics (CTR, completion, average rating) divide sums of events
  whose count varies per user: their interval comes from the delta method.
Every numerator is bounded by its denominator where the metric is a share
(see docs/experiments.md), so no rate can leave [0, 1].
All of them are higher-is-better.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Method = Literal["bootstrap", "delta"]


@dataclass(frozen=True)
class MetricDef:
    name: str
    label: str
    method: Method
    numerator: str  # per-user column
    denominator: str  # per-user column; "one" = 1 per user (a per-user mean)
    unit: Literal["seconds", "count", "share", "rating"]


METRICS: dict[str, MetricDef] = {
    m.name: m
    for m in (
        MetricDef("watch_time_per_user_day", "watch time per user-day", "bootstrap", "watch_per_day", "one", "seconds"),
        MetricDef("plays_per_user_day", "plays per user-day", "bootstrap", "plays_per_day", "one", "count"),
        MetricDef("time_on_site_per_user_day", "time on site per user-day", "bootstrap", "site_per_day", "one", "seconds"),
        MetricDef("ctr", "CTR (attributed clicks / impressions)", "delta", "clicks", "impressions", "share"),
        MetricDef("completion_rate", "completion (completed / played viewings)", "delta", "completed", "played", "share"),
        MetricDef("avg_rating", "average rating (1..10)", "delta", "rating_sum", "ratings", "rating"),
        MetricDef("d1_retention", "D1 retention", "bootstrap", "d1", "d1_eligible", "share"),
        MetricDef("d7_retention", "D7 retention", "bootstrap", "d7", "d7_eligible", "share"),
    )
}

DEFAULT_PRIMARY = "watch_time_per_user_day"


def metric(name: str) -> MetricDef:
    """The definition of `name`; `ValueError` naming the known ones otherwise."""
    try:
        return METRICS[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}; one of {', '.join(METRICS)}") from None
