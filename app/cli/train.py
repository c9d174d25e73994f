"""`cinerec train`, `cinerec models`, `cinerec rollback`: the retrain pipeline by hand."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from app.cli import main
from app.settings import Settings, get_settings

if TYPE_CHECKING:  # the pipeline is imported when a command runs (a fast `cinerec --help`)
    from app.recsys.training.run import RetrainConfig, RunReport


def _table(rows: list[list[str]], header: list[str]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    for row in [header, *rows]:
        click.echo("  ".join(str(x).ljust(w) for x, w in zip(row, widths)))


def _interval(run: dict, prefix: str) -> str:
    """A recorded paired difference as `+0.0123 [+0.0050, +0.0190]`, or `-` when there was none."""
    mean, low, high = (run[f"{prefix}_{part}"] for part in ("mean", "low", "high"))
    return "-" if mean is None else f"{mean:+.4f} [{low:+.4f}, {high:+.4f}]"


def _metric_cell(name: str, value: float | None) -> str:
    """Rates with 4 decimals; `users` is a count (stored as a float like the rest), so an integer."""
    if value is None:
        return "-"
    return f"{value:.0f}" if name == "users" else f"{value:.4f}"


def retrain_in_foreground(settings: Settings, config: RetrainConfig) -> RunReport:
    """One retrain run under `lock:retrain` with a progress display (`cinerec train`, the demo)."""
    from app.recsys.progress import TqdmProgress
    from app.recsys.training import pipeline
    from app.storage.locks import retrain_lock

    progress = TqdmProgress()
    with retrain_lock(settings) as acquired:
        if not acquired:
            raise click.ClickException("another retrain holds lock:retrain; try again when it has finished")
        try:
            return pipeline.retrain(settings, config, progress=progress)
        finally:
            progress.close()


@main.command()
@click.option("--backend", type=click.Choice(["implicit", "spark"]), default=None,
              help="ALS implementation  [default: TRAIN_BACKEND, implicit]")
@click.option("--spark-master", default=None,
              help="Spark master URL for --backend spark, e.g. spark://host:7077  [default: SPARK_MASTER, local[*]]")
@click.option("--force", is_flag=True, help="Publish even if the gate rejects the model (recorded as forced).")
@click.option("--holdout-days", type=click.FloatRange(min=0, min_open=True), default=None,
              help="A fixed holdout of the last N days  [default: grown back from the newest event until "
                   "GATE_MIN_USERS users or GATE_MAX_HOLDOUT_SHARE of the events]")
@click.option("--tune/--no-tune", default=True, show_default=True,
              help="Search the weighting and the models' params on a validation split of the training part "
                   "(TUNE_TRIALS trials, at most TUNE_TIME_SHARE of the run); --no-tune fits the defaults.")
@click.option("--window-days", type=click.FloatRange(min=0, min_open=True), default=None,
              help="History used, counted back from the newest event  [default: every stored event]")
@click.option("--model", "model_name", type=click.Choice(["als", "popular"]), default="als", show_default=True,
              help="The model to fit, gate and publish (popular: the baseline as a version of its own, e.g. to "
                   "test it online against the served model; it needs --force to pass the gate against itself).")
@click.option("--no-switch", is_flag=True,
              help="Publish without serving the version (start an experiment or roll back to serve it).")
@click.option("--two-level/--no-two-level", default=True, show_default=True,
              help="Build the two-level challenger over ALS (ships only when it beats the best single model).")
def train(backend: str | None, spark_master: str | None, force: bool, holdout_days: float | None,
          tune: bool, window_days: float | None, model_name: str, no_switch: bool, two_level: bool) -> None:
    """Retrain in the foreground: load, tune, evaluate vs Popular, gate, publish (or start an experiment, per
    ROLLOUT), record."""
    from app.recsys.training import pipeline

    settings = get_settings()
    settings = settings.with_overrides(train_backend=backend or settings.train_backend,
                                       spark_master=spark_master or settings.spark_master)
    try:
        config = pipeline.RetrainConfig(holdout_days=holdout_days, window_days=window_days, force=force, tune=tune,
                                        model=model_name, switch=not no_switch,
                                        **({} if two_level else {"two_level": None}))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    report = retrain_in_foreground(settings, config)
    candidates = {name: metrics for name, metrics in report.models.items() if "ndcg@10" in metrics}
    keys = sorted(set(report.metrics) | set(report.baseline_metrics))
    _table([[k, *(_metric_cell(k, m.get(k)) for m in candidates.values()),
             _metric_cell(k, report.baseline_metrics.get(k))] for k in keys], ["metric", *candidates, "popular"])
    tuning = report.params.get("tuning")
    if tuning:
        als = tuning["als"]
        click.echo(f"tuned in {tuning['seconds']:.1f}s on {tuning['trial_users']} of {tuning['users']} users "
                   f"({len(als['trials'])} trials, stopped by {als['stopped_by']}, started from {als['start']}): "
                   f"ALS validation NDCG@10 {als['validation_ndcg@10']:.4f} with {json.dumps(als['best'])}; "
                   f"EASE lambda {tuning['ease']['regularization']:g}")
    if report.first_level:
        _table([[name, _metric_cell("", figures.get("recall@100")), _metric_cell("", figures.get("ndcg@10"))]
                for name, figures in report.first_level.items()], ["first level", "recall@100", "ndcg@10"])
    if report.holdout:
        click.echo(f"holdout: {report.holdout.users} users, {report.holdout.share:.1%} of the events "
                   f"(decided by {report.holdout.rule})")
    click.echo(f"shipped: {report.shipped or '-'} (two-level vs best single {report.vs_single or '-'}); "
               f"gate: {report.verdict or '-'}; NDCG@10 difference [95% interval] vs popular "
               f"{report.vs_popular or '-'}, vs served {report.vs_served or '-'}")
    click.echo(f"timings (s): {json.dumps(report.timings)}")
    click.echo(f"{report.version}: {report.status.upper()}: {report.reason}")


@main.command()
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
def models(limit: int) -> None:
    """Recorded retrain runs (newest first) and the version being served."""
    from app.recsys.training import publish
    from app.storage import model_runs
    from app.storage.redis_client import connect

    settings = get_settings()
    runs = model_runs.recent(settings, limit)
    conn = connect(settings)
    try:
        current = publish.current_version(conn)
        available = {v for v, _ in publish.published_versions(conn)}
    finally:
        conn.close()
    rows = []
    for run in runs:
        ndcg = json.loads(run["metrics"] or "{}").get("ndcg@10")
        tuned = (json.loads(run["params"] or "{}").get("tuning") or {}).get("als", {}).get("validation_ndcg@10")
        base = json.loads(run["baseline_metrics"] or "{}").get("ndcg@10")
        marker = "*" if run["version"] == current else ("r" if run["version"] in available else "")
        holdout = f"{run['holdout_users']} ({run['holdout_rule']})" if run["holdout_rule"] else "-"
        rows.append([marker, run["version"], str(run["started_at"]), run["status"], run["shipped"] or "-",
                     _interval(run, "vs_single"), run["verdict"] or "-",
                     "-" if ndcg is None else f"{ndcg:.4f}", "-" if base is None else f"{base:.4f}",
                     "-" if tuned is None else f"{tuned:.4f}",
                     _interval(run, "vs_popular"), _interval(run, "vs_served"), holdout, run["reason"][:60]])
    _table(rows, ["", "version", "started (UTC)", "status", "shipped", "two-level vs single [95%]", "gate",
                  "ndcg@10", "popular", "tuned (val)", "vs popular [95%]", "vs served [95%]", "holdout users",
                  "reason"])
    click.echo(f"served: {current or '(nothing published)'}   (* served, r = can roll back to)")


@main.command()
@click.argument("version")
def rollback(version: str) -> None:
    """Serve a previously published VERSION again (it must not have expired)."""
    from app.recsys.training import publish
    from app.storage.redis_client import connect

    conn = connect(get_settings())
    try:
        publish.rollback(conn, version)
    except publish.PublishError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        conn.close()
    click.echo(f"recs:current -> {version}")
