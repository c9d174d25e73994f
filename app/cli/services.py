"""`cinerec services up|down|status` and `cinerec kafka create-topics`."""
from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Sequence

import click

from app.cli import main
from app.settings import get_settings

if TYPE_CHECKING:
    from app.localstack import Status

NAMES = click.Choice(["kafka", "clickhouse", "redis"])


def _line(status: "Status", extra: Sequence[str] = ()) -> str:
    colour = {"up": "green", "external": "cyan", "starting": "yellow", "down": "red"}[status.state.value]
    state = click.style(f"{status.state.value:9}", fg=colour)
    also = f" [also {', '.join(extra)}]" if extra and status.state.value == "up" else ""
    return f"{status.name:11} {state} {status.address:21} {status.detail}{also}"


@main.group()
def services() -> None:
    """Local Kafka, ClickHouse and Redis (state, data and logs under LOCAL_DIR)."""


@services.command()
@click.argument("names", nargs=-1, type=NAMES)
def up(names: tuple[str, ...]) -> None:
    """Install what is missing, start what is not running, wait until each answers."""
    from app.localstack import ServiceError, lifecycle_lock, services as local_services

    settings = get_settings()
    started = time.monotonic()
    failed = []
    with lifecycle_lock(settings):
        for service in local_services(settings, names):
            try:
                click.echo(_line(service.up(), service.extra_listeners()))
            except ServiceError as exc:
                failed.append(service.name)
                click.echo(click.style(f"{service.name:11} FAILED    ", fg="red") + str(exc), err=True)
    if failed:
        raise click.ClickException(f"could not start: {', '.join(failed)} (see the log lines above)")
    if not names or "kafka" in names:
        _create_topics(None)
    click.echo(f"ready in {time.monotonic() - started:.1f}s")


@services.command()
@click.argument("names", nargs=-1, type=NAMES)
def down(names: tuple[str, ...]) -> None:
    """Stop the processes `up` started (by pid); leave anything else alone."""
    from app.localstack import lifecycle_lock, services as local_services

    settings = get_settings()
    with lifecycle_lock(settings):
        for service in reversed(local_services(settings, names)):
            click.echo(_line(service.down()))


@services.command()
def status() -> None:
    """Print each service as up / starting / external / down with its address."""
    from app.localstack import services as local_services

    for service in local_services(get_settings()):
        click.echo(_line(service.status(), service.extra_listeners()))


@main.group()
def kafka() -> None:
    """Kafka topics."""


@kafka.command("create-topics")
@click.option("--partitions", type=click.IntRange(min=1), default=None, help="default: TOPIC_PARTITIONS")
def create_topics(partitions: int | None) -> None:
    """Create the interactions topic and its DLQ if missing (idempotent)."""
    _create_topics(partitions)


def _create_topics(partitions: int | None) -> None:
    from app.storage.kafka_admin import KafkaAdminError, ensure_topics

    settings = get_settings()
    try:
        created = asyncio.run(ensure_topics(settings, partitions))
    except KafkaAdminError as exc:
        raise click.ClickException(str(exc)) from None
    for name in (settings.topic_interactions, settings.topic_dlq):
        click.echo(f"topic {name}: {'created' if name in created else 'exists'}")
