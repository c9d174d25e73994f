"""`cinerec experiment start|status|stop|report|evaluate`: online experiments by hand.

Thin: app.experiments.operations starts and stops (as the admin API does),
app.experiments.rollout evaluates (as the periodic task does), the analysis
computes the report; this module parses options and prints.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Iterator

import click

from app.cli import main
from app.cli.report import table
from app.settings import get_settings

@main.group()
def experiment() -> None:
    """Online experiments: a challenger version against the served one on a share of users."""


@contextmanager
def _services() -> Iterator[tuple[Any, Any]]:
    """(ClickHouse client, Redis client), closed afterwards; failures become one readable line."""
    import redis
    from clickhouse_driver.errors import Error as ClickHouseError

    from app.experiments.model import InvalidExperiment
    from app.experiments.store import Conflict, NotFound
    from app.storage.redis_client import connect
    from app.storage.clickhouse import client

    settings = get_settings()
    ch, r = client(settings), connect(settings)
    try:
        yield ch, r
    except InvalidExperiment as exc:
        raise click.UsageError(str(exc)) from None
    except (NotFound, Conflict) as exc:
        raise click.ClickException(str(exc)) from None
    except ClickHouseError as exc:
        raise click.ClickException(f"ClickHouse at {settings.clickhouse_url}: {str(exc).split('Stack trace:')[0].strip()}") from None
    except redis.RedisError as exc:
        raise click.ClickException(f"Redis at {settings.redis_url}: {exc}") from None
    finally:
        ch.disconnect()
        r.close()


def _when(text: str | None) -> datetime:
    if not text:
        return datetime.now(timezone.utc).replace(microsecond=0)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"not an ISO time: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


@experiment.command()
@click.option("--control", default=None, help="Control version  [default: the served one, recs:current]")
@click.option("--challenger", required=True, help="Challenger version (published).")
@click.option("--share", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.1, show_default=True,
              help="Share of users in the challenger arm.")
@click.option("--id", "experiment_id", default=None, help="Experiment id  [default: exp-<start time>]")
@click.option("--primary", default="watch_time_per_user_day", show_default=True, help="Primary metric.")
@click.option("--guardrail", "guardrails", multiple=True, metavar="METRIC=TOL",
              help="Guardrail and its tolerated relative decrease (repeat)  [default: d1_retention=0.05, ctr=0.05]")
@click.option("--mde", type=float, default=0.05, show_default=True,
              help="Planned minimum detectable effect on the primary metric (relative).")
@click.option("--min-users", type=click.IntRange(min=1), default=None,
              help="Planned minimum users per arm  [default: from --mde and the last --plan-days of traffic]")
@click.option("--plan-days", type=click.IntRange(min=1), default=14, show_default=True)
@click.option("--max-days", type=click.FloatRange(min=0, min_open=True), default=14.0, show_default=True)
@click.option("--at", "at_text", default=None, metavar="ISO-TIME",
              help="Start time  [default: now; an earlier time for simulated past days]")
def start(control: str | None, challenger: str, share: float, experiment_id: str | None, primary: str,
          guardrails: tuple[str, ...], mde: float, min_users: int | None, plan_days: int, max_days: float,
          at_text: str | None) -> None:
    """Create an experiment and start it (both versions must be published)."""
    from app.experiments import operations
    from app.experiments.model import DEFAULT_GUARDRAILS, Guardrail

    at = _when(at_text)
    with _services() as (ch, r):
        plan = operations.new_plan(
            challenger, control or operations.served_version(r), at, experiment_id, share=share, primary=primary,
            guardrails=tuple(Guardrail.parse(g) for g in guardrails) if guardrails else DEFAULT_GUARDRAILS,
            mde=mde, max_days=max_days,
        )
        running, note = operations.start(ch, r, plan, min_users, plan_days)
    click.echo(note)
    click.echo(f"experiment {running.id} running: {running.control} (control) vs {running.challenger} "
               f"(challenger, {running.share:.0%} of users), until {running.deadline:%Y-%m-%d %H:%M} UTC at the latest")


@experiment.command()
@click.argument("experiment_id", required=False)
@click.option("--json", "as_json", is_flag=True)
def status(experiment_id: str | None, as_json: bool) -> None:
    """List experiments (or show one) and repair the Redis mirror of the running one."""
    from app.experiments import store

    with _services() as (ch, r):
        active = store.sync_active(ch, r)
        items = [store.get(ch, experiment_id)] if experiment_id else store.list_all(ch)
        log = store.decisions(ch, experiment_id) if experiment_id else []
    if as_json:
        click.echo(json.dumps({"experiments": [e.to_json() for e in items],
                               "decisions": [{"at": d.decided_at.isoformat(), "action": d.action.value,
                                              "verdict": d.verdict} for d in log]}, indent=2))
        return
    if not items:
        click.echo("no experiments yet; `cinerec experiment start --challenger VERSION` starts one")
        return
    rows = [(e.id, e.state.value, e.control, e.challenger, f"{e.share:.0%}",
             f"{e.started_at:%Y-%m-%d %H:%M}" if e.started_at else "-", e.decision or "-") for e in items]
    click.echo("\n".join(table(("experiment", "state", "control", "challenger", "share", "started (UTC)", "decision"),
                               rows)))
    click.echo(f"serving: {active.id if active else 'no experiment running'}")
    for d in log:
        click.echo(f"  {d.decided_at:%Y-%m-%d %H:%M} {d.action.value}{': ' + d.verdict if d.verdict else ''}")


@experiment.command()
@click.argument("experiment_id")
@click.option("--reason", default="stopped by hand", show_default=True)
def stop(experiment_id: str, reason: str) -> None:
    """Stop a running experiment; control stays served. Its last report is logged with the decision."""
    from app.experiments import operations

    with _services() as (ch, r):
        stopped = operations.stop(ch, r, experiment_id, reason)
    click.echo(f"experiment {stopped.id} {stopped.state.value}: {stopped.decision}")


@experiment.command()
@click.option("--at", "at_text", default=None, metavar="ISO-TIME",
              help="Evaluate as of this time  [default: now; the end of simulated past days]")
def evaluate(at_text: str | None) -> None:
    """Evaluate the running experiments now, as the periodic task does: promote the challenger
    when it wins, keep the control when it wins or time is up, else log the figures and go on."""
    from app.experiments import rollout
    from app.storage.locks import rollout_lock

    with rollout_lock(get_settings()) as acquired:
        if not acquired:
            raise click.ClickException("another evaluation holds lock:rollout; try again when it has finished")
        with _services() as (ch, r):
            outcomes = rollout.evaluate(ch, r, _when(at_text))
    click.echo("\n".join(map(str, outcomes)) if outcomes else "no experiment is running")


_UNITS = {"seconds": lambda v: f"{v / 60:.1f} min", "count": lambda v: f"{v:.3f}",
          "share": lambda v: f"{v:.1%}", "rating": lambda v: f"{v:.2f}"}


def render(report: dict[str, Any]) -> str:
    """The per-arm table with intervals and the verdict, from `Report.to_json()`."""
    from app.experiments.metrics import METRICS

    e, arms, diffs = report["experiment"], report["arms"], report["differences"]
    control, challenger = arms["control"], arms["challenger"]
    lines = [
        f"experiment {e['id']} ({e['state']}): {e['control']} (control) vs {e['challenger']} "
        f"(challenger, {e['share']:.0%})",
        f"window {report['window']['start'][:16]} .. {report['window']['stop'][:16]} UTC; primary {e['primary']}; "
        "guardrails " + (", ".join(f"{m} (-{t:.0%})" for m, t in e["guardrails"]) or "none"),
        "",
    ]
    rows: list[tuple[Any, ...]] = [("users", control["users"], challenger["users"], "")]
    for total in ("impressions", "impressions_own_version", "clicks", "unattributed_clicks", "plays"):
        rows.append((total.replace("_", " "), f"{control['totals'][total]:.0f}", f"{challenger['totals'][total]:.0f}", ""))
    for name, m in METRICS.items():
        fmt, d = _UNITS[m.unit], diffs[name]
        a, b = control["metrics"][name], challenger["metrics"][name]
        cell = "-" if d["relative"] is None else f"{d['relative']:+.1%}"
        if d["low"] is not None:
            cell += f" [{d['low']:+.1%}, {d['high']:+.1%}] ({m.method})"
        label = m.label + (" *" if name == e["primary"] else "")
        rows.append((label, "-" if a is None else fmt(a), "-" if b is None else fmt(b), cell))
    lines += table(("metric", "control", "challenger", "challenger vs control [95 %]"), rows)
    srm, v = report["sample_ratio"], report["verdict"]
    lines += [
        "",
        f"sample ratio: chi-square {srm['chi2']:.2f}, p = {srm['p_value']:.3g} "
        + ("MISMATCH" if srm["mismatch"] else "(ok)"),
        f"verdict: {v['text']}",
        *(f"  - {reason}" for reason in v["reasons"]),
    ]
    return "\n".join(lines)


@experiment.command()
@click.argument("experiment_id")
@click.option("--json", "as_json", is_flag=True, help="All figures as JSON.")
@click.option("--replicates", type=click.IntRange(min=100), default=1_000, show_default=True,
              help="Bootstrap replicates.")
def report(experiment_id: str, as_json: bool, replicates: int) -> None:
    """Per-arm metrics with 95 % intervals, the sample-ratio check and the verdict."""
    from app.experiments import analysis, store

    with _services() as (ch, _):
        result = analysis.analyse(ch, store.get(ch, experiment_id), _when(None), replicates=replicates).to_json()
    click.echo(json.dumps(result, indent=2) if as_json else render(result))
