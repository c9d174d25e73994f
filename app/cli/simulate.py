"""`cinerec simulate` and `cinerec import-movielens`: put traffic into the platform."""
from __future__ import annotations

import asyncio
from pathlib import Path

import click

from app.cli import main
from app.settings import get_settings


def _service_error(exc: Exception) -> click.ClickException:
    """One readable line: ClickHouse errors carry a server stack trace we cut off."""
    settings = get_settings()
    message = " ".join(str(exc).split("Stack trace:")[0].split())
    return click.ClickException(
        f"{type(exc).__name__} (Kafka {settings.kafka_bootstrap}, ClickHouse {settings.clickhouse_url}): {message}"
        " (are the services up and `cinerec db migrate` run?)"
    )


@main.command()
@click.option("--users", default=5_000, show_default=True, type=click.IntRange(min=1))
@click.option("--films", default=1_000, show_default=True, type=click.IntRange(min=1))
@click.option("--events", default=200_000, show_default=True, type=click.IntRange(min=0))
@click.option("--rate", default=0.0, show_default=True, type=click.FloatRange(min=0), help="events/s; 0 = as fast as possible")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--days", default=30.0, show_default=True, type=click.FloatRange(min=0, min_open=True), help="history length ending now")
@click.option("--bad-fraction", default=0.0, show_default=True, type=click.FloatRange(0, 1), help="share of malformed messages")
@click.option("--service-url", default=None, metavar="URL",
              help="live mode: sessions happen now and are shown this service's recommendations")
@click.option("--live-days", default=0, show_default=True, type=click.IntRange(min=0),
              help="with --service-url: simulate this many past whole days whose users return more when satisfied")
def simulate(
    users: int, films: int, events: int, rate: float, seed: int, days: float, bad_fraction: float,
    service_url: str | None, live_days: int,
) -> None:
    """Simulate site traffic: write a film catalog to ClickHouse and produce events to Kafka.

    By default the history of the last --days; with --service-url, live
    sessions with impressions and clicks attributed to the served model
    (with --live-days, over past simulated days, for online experiments).
    """
    if live_days and not service_url:
        raise click.UsageError("--live-days needs --service-url")
    from app.simulate import run

    settings = get_settings()
    try:
        summary = asyncio.run(
            run(settings, users, films, events, seed, days, rate, bad_fraction, service_url=service_url,
                live_days=live_days)
        )
    except Exception as exc:  # Kafka/ClickHouse errors: one readable line, not a traceback
        raise _service_error(exc) from None
    click.echo(
        f"simulate: {summary.films_written} films, {summary.messages_sent} messages "
        f"({summary.bad_messages} malformed) to {settings.topic_interactions} in {summary.seconds:.1f}s"
        + (f"; {summary.live_sessions} live sessions, {summary.failed_fetches} failed fetches" if service_url else "")
    )


@main.command("import-movielens")
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
def import_movielens(directory: Path | None) -> None:
    """Import a MovieLens directory (movies.csv, ratings.csv): films to ClickHouse, ratings as events to Kafka.

    DIRECTORY defaults to the ml-latest-small copy in /work/shared/data.
    """
    from app.movielens import DEFAULT_DIR, MovieLensError, import_dir

    settings = get_settings()
    try:
        summary = asyncio.run(import_dir(settings, directory or DEFAULT_DIR))
    except MovieLensError as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:  # Kafka/ClickHouse errors: one readable line, not a traceback
        raise _service_error(exc) from None
    click.echo(
        f"import-movielens: {summary.films} films, {summary.ratings} ratings -> {summary.messages} messages "
        f"to {settings.topic_interactions} ({summary.skipped_too_old} ratings before 1990 skipped)"
    )
