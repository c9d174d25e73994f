"""Serve the recommendation API from the Faust worker's own web server.

Faust (faust-streaming 0.15.3, aiohttp driver) keeps its aiohttp Application
at `app.web.web_app` and starts it with an `AppRunner` on `web_port`, which
runs the Application's startup/cleanup signals: so our routes and
`cleanup_ctx` are installed on it when the worker initialises (the
`on_worker_init` signal fires after autodiscovery and before the server
starts). `app.main` autodiscovers `app.web`, which imports this module.

Faust's driver keeps its runner in `app.web._runner` and only calls `setup()`
on it when the server starts: it is replaced here by our `AppRunner` on the
same Application, so the worker's port answers unparsable requests like
`cinerec serve` does (app/web/protocol.py).

Recent watches of users on partitions this worker owns come from its own
`user_stats` table (app/web/recent.py), with no Redis round trip.
"""
from __future__ import annotations

from typing import Any

from agents.loader import PROGRESS
from app.main import app, settings
from app.web.protocol import AppRunner
from app.web.keys import LOADER_PROGRESS, SETTINGS
from app.web.recent import TableRecent
from app.web.server import install
from tables.stats import user_stats


@app.on_worker_init.connect
def install_views(sender: Any, **kwargs: Any) -> None:
    web_app = app.web.web_app
    if SETTINGS in web_app:  # faust's CLI prepares the app (and sends this signal) more than once
        return
    install(web_app, settings, recent=TableRecent(app, user_stats, settings))
    app.web._runner = AppRunner(web_app, access_log=None)  # see the module docstring
    web_app[LOADER_PROGRESS] = PROGRESS  # /ready also says whether the loader moves
