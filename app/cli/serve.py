"""`cinerec serve`: the recommendation API without the Faust worker (scale it out
behind a load balancer; `cinerec worker` serves the same routes on WEB_PORT)."""
from __future__ import annotations

import click

from app.cli import main
from app.settings import get_settings


@main.command()
@click.option("--host", default=None, help="bind address (default: WEB_HOST)")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="port (default: WEB_PORT)")
def serve(host: str | None, port: int | None) -> None:
    """Serve the recommendation API standalone (same app as the worker's web views)."""
    from app.web.server import serve as run

    settings = get_settings()
    run(settings, host or settings.web_host, port or settings.web_port)
