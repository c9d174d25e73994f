"""An experiment's report: per-user figures from ClickHouse, arms by the hash, per-arm
metrics, relative differences with intervals, the sample-ratio check and the verdict.

Synchronous (clickhouse-driver); an aiohttp view would call it in an executor.
Definitions: docs/experiments.md; SQL: app.experiments.queries.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
from clickhouse_driver import Client

from app.experiments import queries as q
from app.experiments.assignment import ARMS, CHALLENGER, CONTROL, in_challenger
from app.experiments.metrics import METRICS, metric
from app.experiments.model import Experiment
from app.experiments.stats import (
    BOOTSTRAP_REPLICATES,
    Difference,
    Sample,
    SampleRatio,
    bootstrap_differences,
    delta_difference,
    sample_ratio,
    users_needed,
)
from app.experiments.verdict import Evidence, Verdict, decide
from app.schema import EVENT_TYPES, WATCH_EVENT_TYPES

DAY_S = 86_400
RETENTION_DAYS = (1, 7)
_EVENT_PARAMS = {**{t: t for t in EVENT_TYPES}, "watch_types": tuple(sorted(WATCH_EVENT_TYPES))}


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


@dataclass(frozen=True)
class UserTable:
    """One row per exposed user (sorted by user id): raw per-user counts of the window."""

    user_id: np.ndarray
    exposed_at: np.ndarray  # epoch seconds
    counts: dict[str, np.ndarray]
    stop: int  # epoch seconds, end of the window (exclusive)

    def __len__(self) -> int:
        return len(self.user_id)

    def columns(self) -> dict[str, np.ndarray]:
        """The per-user numerators and denominators of `app.experiments.metrics`.

        user-days: UTC days from the exposure day to the window's last day, both
        included. Dk retention: eligible when day exposure + k ends inside the window.
        """
        c = self.counts
        exposure_day = self.exposed_at // DAY_S
        days = ((self.stop - 1) // DAY_S - exposure_day + 1).astype(float)
        out = {**c, "one": np.ones(len(self)), "days": days,
               "watch_per_day": c["watch_seconds"] / days, "plays_per_day": c["plays"] / days,
               "site_per_day": c["site_seconds"] / days}
        for k in RETENTION_DAYS:
            eligible = (exposure_day + k + 1) * DAY_S <= self.stop
            out[f"d{k}_eligible"] = eligible.astype(float)
            out[f"d{k}"] = c[f"active_d{k}"] * eligible
        return out


_QUERIES = (
    (q.USER_ACTIVITY, ("site_seconds", "plays", "ratings", "rating_sum", "active_d1", "active_d7")),
    (q.USER_VIEWINGS, ("watch_seconds", "played", "completed")),
)
_EXPOSURE_COLUMNS = ("impressions", "clicks", "unattributed_clicks", "impressions_control_version",
                     "impressions_challenger_version")


def load_users(ch: Client, start: datetime, stop: datetime, control: str, challenger: str) -> UserTable:
    """Per-user figures of the users first exposed in [start, stop)."""
    params = {"start": _epoch(start), "stop": _epoch(stop), "control": control, "challenger": challenger, **_EVENT_PARAMS}
    exposure = ch.execute(q.USER_EXPOSURE, params)
    user_id = np.array([row[0] for row in exposure], dtype=np.uint64)
    exposed_at = np.array([row[1] for row in exposure], dtype=np.int64)
    counts = {name: np.array([row[2 + i] for row in exposure], dtype=float) for i, name in enumerate(_EXPOSURE_COLUMNS)}
    for sql, names in _QUERIES:
        rows = ch.execute(sql, params)
        at = np.searchsorted(user_id, np.array([row[0] for row in rows], dtype=np.uint64))  # exposed users only
        for i, name in enumerate(names, start=1):
            counts[name] = np.zeros(len(user_id))
            counts[name][at] = [row[i] for row in rows]
    return UserTable(user_id, exposed_at, counts, _epoch(stop))


@dataclass(frozen=True)
class ArmFigures:
    users: int
    totals: dict[str, float]  # raw sums: impressions, clicks, plays, watch seconds, user-days, ...
    metrics: dict[str, float]  # each compared metric's value (NaN when undefined)


@dataclass(frozen=True)
class Report:
    experiment: Experiment
    start: datetime
    stop: datetime
    arms: dict[str, ArmFigures]
    differences: dict[str, Difference]
    sample_ratio: SampleRatio
    needed: dict[str, tuple[int, int]]
    verdict: Verdict

    def to_json(self) -> dict[str, Any]:
        """JSON-ready figures (NaN as None): the CLI's --json and the decision log."""
        def clean(x: float) -> float | None:
            return None if isinstance(x, float) and math.isnan(x) else x

        return {
            "experiment": self.experiment.to_json(),
            "window": {"start": self.start.isoformat(), "stop": self.stop.isoformat()},
            "arms": {
                arm: {"users": f.users, "totals": f.totals, "metrics": {k: clean(v) for k, v in f.metrics.items()}}
                for arm, f in self.arms.items()
            },
            "differences": {
                k: {"relative": clean(d.relative), "low": clean(d.low), "high": clean(d.high), "method": METRICS[k].method,
                    "label": METRICS[k].label, "unit": METRICS[k].unit}
                for k, d in self.differences.items()
            },
            "sample_ratio": {"chi2": self.sample_ratio.chi2, "p_value": self.sample_ratio.p_value,
                             "mismatch": self.sample_ratio.mismatch},
            "needed_users": {k: list(v) for k, v in self.needed.items()},
            "verdict": {"kind": self.verdict.kind.value, "text": self.verdict.text,
                        "more_users_per_arm": self.verdict.more_users_per_arm, "reasons": list(self.verdict.reasons)},
        }


_TOTALS = ("impressions", "clicks", "unattributed_clicks", "plays", "watch_seconds", "site_seconds", "days",
           "played", "completed", "ratings")


def _arm_figures(columns: dict[str, np.ndarray], arm: str) -> ArmFigures:
    """Counts and metric values of one arm. `impressions_own_version`: impressions that carry
    the arm's own model version (all of them once serving follows the arms)."""
    users = len(columns["one"])
    metrics = {name: Sample(columns[m.numerator], columns[m.denominator]).value for name, m in METRICS.items()}
    totals = {name: float(columns[name].sum()) for name in _TOTALS}
    totals["impressions_own_version"] = float(columns[f"impressions_{arm}_version"].sum())
    return ArmFigures(users, totals, metrics)


def compare(columns: dict[str, dict[str, np.ndarray]], seed: int = 0,
            replicates: int = BOOTSTRAP_REPLICATES) -> dict[str, Difference]:
    """Relative difference challenger vs control of every metric, by its method."""
    def samples(arm: str, names: list[str]) -> list[Sample]:
        return [Sample(columns[arm][METRICS[n].numerator], columns[arm][METRICS[n].denominator]) for n in names]

    boot = [n for n, m in METRICS.items() if m.method == "bootstrap"]
    out = dict(zip(boot, bootstrap_differences(samples(CONTROL, boot), samples(CHALLENGER, boot), seed, replicates)))
    for n, m in METRICS.items():
        if m.method == "delta":
            out[n] = delta_difference(*(samples(arm, [n])[0] for arm in ARMS))
    return {n: out[n] for n in METRICS}


def sample_needs(experiment: Experiment, everyone: dict[str, np.ndarray], control_values: dict[str, float]) -> dict[str, tuple[int, int]]:
    """Users per arm to detect the planned effect on the primary (and each guardrail's
    tolerance), from the per-user variance over both arms and the control's value."""
    effects = {experiment.primary: experiment.mde, **{g.metric: g.tolerance for g in experiment.guardrails}}
    needed = {}
    for name, effect in effects.items():
        m = metric(name)
        variance = Sample(everyone[m.numerator], everyone[m.denominator]).per_user_variance()
        mean = control_values[name]
        if effect > 0 and mean > 0 and not math.isnan(variance):
            needed[name] = users_needed(variance, mean, effect, experiment.share)
    return needed


def analyse(ch: Client, experiment: Experiment, now: datetime | None = None,
            replicates: int = BOOTSTRAP_REPLICATES) -> Report:
    """The report of a started experiment over its window (to `now` while it runs)."""
    start, stop = experiment.window(now or datetime.now(timezone.utc))
    table = load_users(ch, start, stop, experiment.control, experiment.challenger)
    challenger = in_challenger(experiment.hash_seed, experiment.threshold, table.user_id)
    everyone = table.columns()
    columns = {CONTROL: {k: v[~challenger] for k, v in everyone.items()},
               CHALLENGER: {k: v[challenger] for k, v in everyone.items()}}
    arms = {arm: _arm_figures(columns[arm], arm) for arm in ARMS}
    differences = compare(columns, seed=experiment.hash_seed % 2**32, replicates=replicates)
    srm = sample_ratio(arms[CONTROL].users, arms[CHALLENGER].users, experiment.share)
    needed = sample_needs(experiment, everyone, arms[CONTROL].metrics)
    evidence = Evidence(
        users=(arms[CONTROL].users, arms[CHALLENGER].users),
        sample_ratio=srm,
        primary=differences[experiment.primary],
        guardrails={g.metric: differences[g.metric] for g in experiment.guardrails},
        needed=needed,
    )
    return Report(experiment, start, stop, arms, differences, srm, needed, decide(experiment, evidence))


def baseline(ch: Client, metric_name: str, now: datetime, days: int = 14) -> tuple[float, float, int]:
    """(value, per-user variance, users) of a metric over the last `days`, every exposed
    user together: what `cinerec experiment start --mde` plans the sample from."""
    m = metric(metric_name)
    columns = load_users(ch, now - timedelta(days=days), now, "", "").columns()
    sample = Sample(columns[m.numerator], columns[m.denominator])
    return sample.value, sample.per_user_variance(), sample.users
