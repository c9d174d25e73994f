"""`GET /dashboard`: the operators' page of business metrics, and the static
files it needs (`/static/`: its script and the vendored Chart.js).

The page is plain HTML + JS with no build step; it draws what
`GET /v1/analytics/dashboard` returns, so it works offline (no CDN).
The page and its scripts hold no figures and are served without a token (a
browser cannot send a bearer header when it opens a URL): every figure comes
from the analytics API, which needs the token; the page asks for it once and
keeps it for the tab's session (README "Security").
"""
from __future__ import annotations

from pathlib import Path

from aiohttp import web

from app.web import metrics

STATIC_DIR = Path(__file__).resolve().parent / "static"
PAGE = STATIC_DIR / "dashboard.html"


async def dashboard_page(request: web.Request) -> web.FileResponse:
    """The dashboard HTML (it fetches its data itself)."""
    return web.FileResponse(PAGE, headers={"Cache-Control": "no-cache"})


def setup_routes(app: web.Application) -> None:
    """Add `/dashboard` and `/static/...`."""
    app.router.add_get("/dashboard", metrics.instrumented("/dashboard", dashboard_page))
    app.router.add_static("/static/", STATIC_DIR, name="static")
