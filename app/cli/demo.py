"""`cinerec demo`: the whole platform on this machine, end to end, in one command.

Steps (each prints what it does): topics -> Procfile processes in the
background (worker with agents + web, Celery beat, trainer, rollout) ->
simulated history through Kafka into ClickHouse, ending a week ago -> a
foreground retrain that publishes ALS to Redis -> Popular published as a
version of its own, not served -> an online experiment, ALS (served) against
Popular on half of the users, over the last week's simulated days whose users
react to what they are shown, evaluated by the rollout policy (its verdict and
figures printed; the dashboard shows it) -> a brand-new viewer whose plays
arrive after training (fold-in) -> live sessions shown the served
recommendations (funnel data for the dashboard) -> the URLs to try.
`cinerec demo --stop` stops the Procfile processes.
"""
from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import click

from app.cli import main
from app.settings import REPO_ROOT, Settings, get_settings
from app.storage.interactions import count_visible

if TYPE_CHECKING:  # the command imports the pipeline lazily (a fast `cinerec --help`)
    from app.recsys.training.run import RetrainConfig, RunReport

PROCFILE_MARKER = "honcho"
NEW_VIEWER_ID = 9_000_001
# The demo's experiment: half of the users in each arm, and a planned minimum sample its
# week of 3,000 simulated users reaches (planning from the history would ask for far more).
EXPERIMENT_SHARE = 0.5
EXPERIMENT_MIN_USERS = 500


def _paths(settings: Settings) -> tuple[Path, Path]:
    folder = settings.local_dir / "demo"
    return folder / "procfile.log", folder / "procfile.pid"


def _get_json(url: str, timeout: float) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (our own local URL)
        return json.loads(response.read())


def _step(text: str) -> None:
    click.secho(f"==> {text}", fg="cyan", bold=True)


def start_procfile(settings: Settings) -> int:
    """Start `honcho start` (Procfile) in the background unless ours already runs."""
    from app.localstack import proc

    logfile, pidfile = _paths(settings)
    pid = proc.owned_pid(pidfile, PROCFILE_MARKER)
    if pid is not None:
        click.echo(f"    Procfile processes already running (pid {pid}), log {logfile}")
        return pid
    honcho = Path(REPO_ROOT / ".venv" / "bin" / "honcho")
    argv = [str(honcho) if honcho.exists() else "honcho", "start", "-f", str(REPO_ROOT / "Procfile")]
    pid = proc.spawn(argv, logfile, pidfile, cwd=REPO_ROOT)
    click.echo(f"    started worker, beat, trainer, rollout (honcho pid {pid}), log {logfile}")
    return pid


def wait_ready(settings: Settings, timeout: float = 180.0) -> None:
    """Wait until the worker's web answers /health (the agents run once it does)."""
    from app.localstack import proc

    logfile, pidfile = _paths(settings)
    url = f"{settings.web_url}/health"

    def healthy() -> bool:
        try:
            return _get_json(url, 2.0).get("status") == "ok"
        except (OSError, ValueError):
            return False

    alive = lambda: proc.owned_pid(pidfile, PROCFILE_MARKER) is not None  # noqa: E731
    if not proc.wait_for(healthy, timeout, alive=alive, interval=1.0):
        raise click.ClickException(f"worker did not answer {url} within {timeout:.0f}s; log:\n{proc.tail(logfile, 30)}")


def wait_loaded(settings: Settings, before: int, sent: int, timeout: float = 600.0) -> int:
    """Poll ClickHouse until the `sent` new events are visible on top of `before`, or until the
    worker has consumed and committed all of them (`group_caught_up`): a history of the same seed
    and day has the same event ids, so a second demo that day adds rows ClickHouse already holds
    (idempotent by design) and the count alone would never reach `sent`."""
    from tqdm import tqdm

    from app.storage.kafka_admin import group_caught_up

    deadline = time.monotonic() + timeout
    with tqdm(total=sent, desc="loaded into ClickHouse", unit="ev", leave=True) as bar:
        while True:
            new = count_visible(settings) - before
            bar.update(max(0, min(new, sent) - bar.n))
            if new >= sent:
                return new
            if asyncio.run(group_caught_up(settings)) and count_visible(settings) - before == new:
                bar.write(f"    the worker consumed every event; {sent - new:,} of them were already in "
                          "ClickHouse (same ids: this history was loaded before) and count once")
                return new
            if time.monotonic() > deadline:
                raise click.ClickException(f"only {new} of {sent} events reached ClickHouse in {timeout:.0f}s")
            time.sleep(1.0)


async def _new_viewer(settings: Settings, film_ids: list[int]) -> None:
    from app.events import Event, new_event_id
    from app.producer import EventProducer

    now = time.time()
    async with EventProducer(settings) as producer:
        await producer.send_many(
            Event(new_event_id(), NEW_VIEWER_ID, film, kind, now - 60 + i, session_id="demo-new-viewer")
            for i, film in enumerate(film_ids)
            for kind in ("play", "complete")
        )


def first_genre_films(settings: Settings, n: int = 3) -> list[int]:
    """A few popular films sharing one genre: what a new viewer with a clear taste watches."""
    from app.storage.clickhouse import client

    conn = client(settings)
    try:
        rows = conn.execute(
            "SELECT film_id, genres FROM films FINAL WHERE length(genres) > 0 ORDER BY film_id LIMIT 2000"
        )
    finally:
        conn.disconnect()
    genre = rows[0][1][0]
    return [film for film, genres in rows if genres and genres[0] == genre][:n]


def busiest_viewer(settings: Settings) -> int:
    """The user with the most completed films: certainly in the model just trained."""
    from app.storage.clickhouse import client

    conn = client(settings)
    try:
        rows = conn.execute(
            "SELECT user_id FROM interactions WHERE event_type = 'complete' AND user_id != %(new)s "
            "GROUP BY user_id ORDER BY count() DESC, user_id LIMIT 1",
            {"new": NEW_VIEWER_ID},
        )
    finally:
        conn.disconnect()
    return rows[0][0] if rows else 1


def wait_foldin(settings: Settings, timeout: float = 30.0) -> dict:
    url = f"{settings.web_url}/v1/users/{NEW_VIEWER_ID}/recommendations?limit=5"
    deadline = time.monotonic() + timeout
    answer: dict = {}
    while time.monotonic() < deadline:
        answer = _get_json(url, 5.0)
        if answer.get("source") == "foldin":
            break
        time.sleep(1.0)
    return answer


def shipped_note(report) -> str:
    """Which model the run shipped, and if not the two-level one, why (the gate's comparison)."""
    two = report.models.get("two-level", {})
    if report.shipped == "two-level":
        return f"the two-level model (vs ALS {report.vs_single}) - its lists are what warm users get"
    if "skipped" in two:
        return f"{report.shipped or 'nothing'}: no two-level model this run ({two['skipped']})"
    return (f"{report.shipped or 'nothing'}: the two-level model was not shown better than the best single "
            f"model (NDCG difference [95%] {report.vs_single or '-'}), so the single model ships")


def retrain(settings: Settings, config: RetrainConfig) -> RunReport:
    """One foreground retrain (as `cinerec train`), its outcome printed; its report."""
    from app.cli.train import retrain_in_foreground

    report = retrain_in_foreground(settings, config)
    click.echo(f"    {report.version}: {report.status}: {report.reason}")
    return report


def wait_following(settings: Settings, experiment_id: str, timeout: float = 60.0) -> None:
    """Wait until the web answers users from the experiment's arms (it polls exp:active)."""
    url = f"{settings.web_url}/v1/users/1/recommendations?limit=1"
    deadline = time.monotonic() + timeout
    while _get_json(url, 5.0).get("experiment") != experiment_id:
        if time.monotonic() > deadline:
            raise click.ClickException(f"the web did not start serving experiment {experiment_id} within {timeout:.0f}s")
        time.sleep(0.5)


def run_experiment(settings: Settings, users: int, films: int, days: int, first_day: datetime, served: str) -> None:
    """Popular as its own version, then ALS (served) against it over `days` simulated days from
    `first_day`, evaluated at their end as the periodic task would; prints the verdict and figures."""
    from app.cli.experiment import render
    from app.experiments import operations, rollout, store
    from app.recsys.training import pipeline
    from app.simulate import run as simulate
    from app.storage.clickhouse import client
    from app.storage.locks import rollout_lock
    from app.storage.redis_client import connect

    _step("Popular as a version of its own, published without serving it "
          "(cinerec train --model popular --force --no-switch)")
    popular = retrain(settings, pipeline.RetrainConfig(model="popular", force=True, switch=False))
    end = first_day + timedelta(days=days)
    _step(f"online experiment: the served model ({served}) vs Popular on {EXPERIMENT_SHARE:.0%} of the users, "
          f"{days} simulated days from {first_day:%Y-%m-%d}")
    ch, r = client(settings), connect(settings)
    try:
        plan = operations.new_plan(popular.version, served, first_day, f"demo-{popular.version}",
                                   share=EXPERIMENT_SHARE)
        running, note = operations.start(ch, r, plan, min_users=EXPERIMENT_MIN_USERS)
        click.echo(f"    {running.id} running; {note}")
        wait_following(settings, running.id)
        before = count_visible(settings)
        summary = asyncio.run(simulate(settings, users, films, 10**9, seed=0, service_url=settings.web_url,
                                       live_days=days, end_ts=end.timestamp()))
        click.echo(f"    {summary.live_sessions} visits shown their arm's recommendations, "
                   f"{summary.messages_sent} events")
        wait_loaded(settings, before, summary.messages_sent)
        with rollout_lock(settings) as acquired:  # the periodic task may be at it too: then it decides
            outcomes = rollout.evaluate(ch, r, end) if acquired else []
        click.echo("    evaluated: " + ("; ".join(map(str, outcomes)) or "by the periodic task"))
        stored = store.get(ch, running.id)  # the figures of its last decision, under its state now
        figures = {**store.decisions(ch, running.id)[-1].figures, "experiment": stored.to_json()}
        click.echo("\n".join("    " + line for line in render(figures).splitlines()))
        click.echo(f"    decision: {stored.decision or 'none yet (still running)'}")
    finally:
        ch.disconnect()
        r.close()


@main.command()
@click.option("--users", default=3_000, show_default=True, type=click.IntRange(min=10))
@click.option("--films", default=800, show_default=True, type=click.IntRange(min=10))
@click.option("--events", default=200_000, show_default=True, type=click.IntRange(min=1_000))
@click.option("--live-events", default=5_000, show_default=True, type=click.IntRange(min=0))
@click.option("--experiment-days", default=7, show_default=True, type=click.IntRange(min=0),
              help="Simulated days of the ALS vs Popular experiment (0: no experiment).")
@click.option("--stop", is_flag=True, help="Stop the Procfile processes the demo started, and exit.")
def demo(users: int, films: int, events: int, live_events: int, experiment_days: int, stop: bool) -> None:
    """Run the platform end to end on simulated traffic and print the URLs to try."""
    from app.localstack import proc
    from app.recsys.training import pipeline
    from app.simulate import run as simulate
    from app.storage.kafka_admin import ensure_topics

    settings = get_settings()
    if stop:
        pid = proc.owned_pid(_paths(settings)[1], PROCFILE_MARKER)
        if pid is not None:
            proc.stop(pid, 30.0)
        click.echo("demo: Procfile processes stopped" if pid else "demo: nothing was running")
        return
    _step(f"topics {settings.topic_interactions}, {settings.topic_dlq} ({settings.topic_partitions} partitions)")
    asyncio.run(ensure_topics(settings))
    _step("Procfile processes: worker (Faust agents + web), beat, trainer, rollout")
    start_procfile(settings)
    wait_ready(settings)
    # the history ends where the experiment's simulated days begin (whole days before today)
    first_day = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(
        days=experiment_days)
    _step(f"simulated history: {users} users, {films} films, {events} events through Kafka, "
          f"the 30 days to {first_day:%Y-%m-%d %H:%M} UTC")
    before = count_visible(settings)
    summary = asyncio.run(simulate(settings, users, films, events, seed=0, days=30.0, end_ts=first_day.timestamp()))
    wait_loaded(settings, before, summary.messages_sent - summary.bad_messages)
    _step("retrain: ALS and the two-level model (ALS + item-kNN + similar-to-recent + popular + trending, "
          "LightGBM ranker) on a time holdout; the better one faces the gate vs Popular; publish to Redis")
    report = retrain(settings, pipeline.RetrainConfig())
    candidates = {name: m for name, m in report.models.items() if "ndcg@10" in m}
    for name in ("ndcg@10", "recall@10", "map@10"):
        click.echo(f"    {name:10} " + "   ".join(f"{model} {m[name]:.4f}" for model, m in candidates.items())
                   + f"   popular {report.baseline_metrics.get(name, float('nan')):.4f}")
    click.echo(f"    shipped: {shipped_note(report)}")
    if experiment_days and report.published:
        run_experiment(settings, users, films, experiment_days, first_day, report.version)
    _step(f"a new viewer (user {NEW_VIEWER_ID}) plays films after training: fold-in at request time")
    asyncio.run(_new_viewer(settings, first_genre_films(settings)))
    answer = wait_foldin(settings)
    click.echo(f"    source={answer.get('source')} items={[i['film_id'] for i in answer.get('items', [])]}")
    if live_events:
        _step(f"live sessions shown the served recommendations ({live_events} events)")
        asyncio.run(simulate(settings, users, films, live_events, seed=1, service_url=settings.web_url))
    base = settings.web_url
    _step("try these")
    for label, path in (
        ("warm user", f"/v1/users/{busiest_viewer(settings)}/recommendations?limit=10"),
        ("new viewer (fold-in)", f"/v1/users/{NEW_VIEWER_ID}/recommendations?limit=10"),
        ("unknown user (trending)", "/v1/users/123456789/recommendations?limit=10"),
        ("similar films", "/v1/films/1/similar?limit=10"),
        ("popular", "/v1/films/popular?limit=10"),
        ("trending", "/v1/films/trending?limit=10"),
        ("served model", "/v1/models/current"),
        ("dashboard", f"/dashboard?from={first_day - timedelta(days=30):%Y-%m-%d}&to={datetime.now(timezone.utc):%Y-%m-%d}"),
        ("metrics", "/metrics"),
        ("readiness", "/ready"),
    ):
        click.echo(f"    {label:24} curl -s {base}{path}")
    if settings.analytics_open:
        click.echo("    (analytics is open: ANALYTICS_OPEN=1)")
    elif settings.analytics_token or settings.admin_token:
        click.echo("    (the dashboard asks for ANALYTICS_TOKEN; curl analytics with -H 'Authorization: Bearer ...')")
    else:
        click.echo("    (analytics is closed without a token: `make demo-down`, then e.g. "
                   "`ANALYTICS_TOKEN=pick-one make demo`; README \"Security\")")
    click.echo(f"    report                   .venv/bin/cinerec report --from <YYYY-MM-DD> --to <YYYY-MM-DD>")
    click.echo("    experiments              .venv/bin/cinerec experiment status   (and: report ID)")
    click.echo("    stop                     make demo-down   (Procfile processes and services)")
