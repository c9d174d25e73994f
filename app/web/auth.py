"""Bearer tokens of the serving port: one policy object per group of private routes.

Per-user data and business figures are never served without a token (README
"Security"). A group is either open by a setting, or needs one of its tokens;
with no token configured it is closed, and the answer says how to configure it
(a 403, never a 500). The same `Policy.check` guards the aiohttp routes
(`protected`) and the Faust-side debug views (agents/views.py).
"""
from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Callable

from aiohttp import web

from app.settings import Settings
from app.web.handlers import json_response
from app.web.keys import SETTINGS
from app.web.metrics import Handler

WWW_AUTHENTICATE = 'Bearer realm="cinerec"'


@dataclass(frozen=True)
class Denied:
    """Why a request was refused. `code` is what a client acts on: `missing` (ask for a
    token), `rejected` (ask again), `unconfigured` (no token can help: tell the operator)."""

    status: int
    code: str
    message: str

    def body(self) -> dict[str, str]:
        return {"error": self.message, "auth": self.code}

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": WWW_AUTHENTICATE} if self.status == 401 else {}


@dataclass(frozen=True)
class Policy:
    """Which settings hold the tokens of a route group, and whether a setting opens it."""

    what: str
    tokens: Callable[[Settings], tuple[str, ...]]
    configure: str
    is_open: Callable[[Settings], bool] = lambda settings: False

    def check(self, settings: Settings, authorization: str | None) -> Denied | None:
        """None when the request may pass, else why not (constant-time token compare)."""
        if self.is_open(settings):
            return None
        tokens = [t.encode() for t in self.tokens(settings) if t]
        if not tokens:
            return Denied(403, "unconfigured", f"{self.what} is disabled: no token is configured; {self.configure}")
        scheme, _, sent = (authorization or "").partition(" ")
        sent = sent.strip()
        if scheme.lower() != "bearer" or not sent:
            return Denied(401, "missing", f"{self.what} needs a bearer token (Authorization: Bearer <token>)")
        matches = [hmac.compare_digest(sent.encode(), token) for token in tokens]  # compare all: no early exit
        return None if any(matches) else Denied(403, "rejected", f"wrong token for {self.what}")


ADMIN = Policy(
    what="the admin API",
    tokens=lambda s: (s.admin_token,),
    configure="set ADMIN_TOKEN and send it as `Authorization: Bearer <token>`",
)
ANALYTICS = Policy(
    what="analytics",
    tokens=lambda s: (s.analytics_token, s.admin_token),
    configure=(
        "set ANALYTICS_TOKEN (or ADMIN_TOKEN) and send it as `Authorization: Bearer <token>`, "
        "or set ANALYTICS_OPEN=1 to serve analytics without a token on a trusted network"
    ),
    is_open=lambda s: s.analytics_open,
)
DEBUG = Policy(
    what="the debug views",
    tokens=lambda s: (s.admin_token,),
    configure="set ADMIN_TOKEN and send it as `Authorization: Bearer <token>`",
)


def denial_response(denied: Denied) -> web.Response:
    response = json_response(denied.body(), status=denied.status)
    response.headers.update(denied.headers())
    return response


def protected(policy: Policy, handler: Handler) -> Handler:
    """`handler` behind `policy`: refused requests never reach it."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        denied = policy.check(request.app[SETTINGS], request.headers.get("Authorization"))
        return denial_response(denied) if denied else await handler(request)

    guarded.__name__ = getattr(handler, "__name__", "handler")
    guarded.__doc__ = handler.__doc__
    return guarded
