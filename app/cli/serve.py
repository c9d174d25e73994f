"""`cinerec serve`: the recommendation API without the Faust worker (scale it out
behind a load balancer; `cinerec worker` serves the same routes on WEB_PORT)."""
from __future__ import annotations

import click

from app.cli import main
from app.settings import get_settings


@main.command()
@click.option("--host", default=None, help="bind address (default: WEB_HOST)")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="port (default: WEB_PORT)")
@click.option("--processes", type=click.IntRange(1, 256), default=1, show_default=True,
              help="server processes sharing the port (SO_REUSEPORT), e.g. one per core")
@click.option("--reuse-port", is_flag=True, hidden=True, help="one of several processes on the port")
def serve(host: str | None, port: int | None, processes: int, reuse_port: bool) -> None:
    """Serve the recommendation API standalone (same app as the worker's web views)."""
    from app.web.server import serve as run, serve_processes

    settings = get_settings()
    host, port = host or settings.web_host, port or settings.web_port
    if processes > 1:
        serve_processes(host, port, processes)
    else:
        run(settings, host, port, reuse_port=reuse_port)
