"""`cinerec db ...`: ClickHouse schema."""
from __future__ import annotations

import click

from app.cli import main
from app.settings import get_settings


@main.group()
def db() -> None:
    """ClickHouse database `cinerec`."""


@db.command()
def migrate() -> None:
    """Create the database and its tables if they are missing (idempotent)."""
    from app.storage.clickhouse import migrate as run_migrations

    settings = get_settings()
    try:
        ran = run_migrations(settings)
    except Exception as exc:  # driver errors carry the server's message
        raise click.ClickException(f"ClickHouse at {settings.clickhouse_url}: {exc}") from None
    click.echo(f"clickhouse: database {settings.clickhouse_database} migrated ({len(ran)} statements)")
