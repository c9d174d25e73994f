"""The `cinerec` command. Each group of subcommands lives in its own module and
registers itself on `main`; importing them here is the only wiring."""
from __future__ import annotations

import logging
import sys

import click

from app.settings import SettingsError, get_settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """cinerec: recommender platform for an online cinema."""
    try:
        settings = get_settings()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@main.command()
def config() -> None:
    """Print the effective settings (admin token hidden)."""
    for name, value in get_settings().describe().items():
        click.echo(f"{name:24} {value}")


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
def worker(ctx: click.Context) -> None:
    """Run the Faust worker (agents + web). Extra args go to `faust worker`."""
    from app.main import app

    sys.argv = ["cinerec", "worker", "-l", get_settings().log_level, *ctx.args]
    app.main()


from app.cli import db  # noqa: E402,F401  (registers subcommands)
from app.cli import services  # noqa: E402,F401
from app.cli import serve  # noqa: E402,F401
from app.cli import train  # noqa: E402,F401
from app.cli import simulate  # noqa: E402,F401
from app.cli import report  # noqa: E402,F401
from app.cli import demo  # noqa: E402,F401
from app.cli import experiment  # noqa: E402,F401
