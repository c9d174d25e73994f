"""The HTTP connection layer of both servers (`cinerec serve` and the Faust
worker's web port): a request aiohttp cannot even parse gets a short JSON 400.

aiohttp answers such requests (a request line or header over 8 KB, a bad
header character, ...) before any route or middleware runs, in its
`RequestHandler.handle_error`: by default with the offending bytes echoed in a
text body (up to 8 KB of them) and a traceback logged at ERROR level for every
one. A client, not the service, is wrong there: `QuietRequestHandler` logs one
INFO line and answers `{"error": ...}` without the input. Everything else
(500s included) keeps aiohttp's handling.

aiohttp offers no public hook for the handler class, so `AppRunner` swaps the
class of the server it makes (same object and state; only the per-connection
handler it creates differs). tests/integration/test_serving_port.py checks it
on a real worker and a real `cinerec serve`.
"""
from __future__ import annotations

import logging
import re

from aiohttp import web, web_protocol
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from aiohttp.web_request import BaseRequest

from app.web.handlers import ECHO_MAX, json_response

log = logging.getLogger(__name__)


def parse_error_reason(exc: HttpProcessingError) -> str:
    """The kind of parse error without the input aiohttp quotes after it ("Invalid header token:\\n\\n  b'...'")."""
    if isinstance(exc, LineTooLong):
        return "the request line or a header is longer than 8 KB"
    reason = re.split(r"""[:\n'"]""", exc.message or "", maxsplit=1)[0].strip()
    return reason[:ECHO_MAX] or type(exc).__name__


class QuietRequestHandler(web_protocol.RequestHandler):
    """A connection's handler that answers unparsable requests with a short JSON error."""

    __slots__ = ()

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if not isinstance(exc, HttpProcessingError) or status >= 500 or request.writer.output_size > 0:
            return super().handle_error(request, status, exc, message)
        reason = parse_error_reason(exc)
        log.info("rejected a malformed HTTP request from %s: %s (%d)", request.remote, reason, status)
        response = json_response({"error": f"malformed HTTP request: {reason}"}, status=status)
        response.force_close()
        return response


class QuietServer(web.Server):
    """`web.Server` whose connections use `QuietRequestHandler`."""

    def __call__(self) -> web_protocol.RequestHandler:
        return QuietRequestHandler(self, loop=self._loop, **self._kwargs)


class AppRunner(web.AppRunner):
    """`web.AppRunner` serving through `QuietServer`."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = QuietServer
        return server
