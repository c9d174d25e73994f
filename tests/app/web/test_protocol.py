"""The reason a malformed request is refused with never carries the request's bytes."""
from __future__ import annotations

from aiohttp.http_exceptions import BadHttpMessage, BadHttpMethod, InvalidHeader, LineTooLong

from app.web.handlers import ECHO_MAX
from app.web.protocol import parse_error_reason


def test_a_line_too_long_is_named_without_the_line() -> None:
    exc = LineTooLong(b"/v1/users/" + b"1" * 9000, 8190)
    assert parse_error_reason(exc) == "the request line or a header is longer than 8 KB"


def test_other_parse_errors_keep_their_kind_and_drop_the_quoted_input() -> None:
    secret = "a" * 3000
    cases = {
        BadHttpMessage(f"Invalid header token:\n\n  b'X-Bad\\x01: {secret}'\n  ^"): "Invalid header token",
        BadHttpMethod(f"G\x01ET {secret}"): "Bad HTTP method in status line",
        InvalidHeader(f"X-{secret}"): "Invalid HTTP header",
    }
    for exc, expected in cases.items():
        reason = parse_error_reason(exc)
        assert reason.startswith(expected), (exc, reason)
        assert secret[:50] not in reason and len(reason) <= ECHO_MAX


def test_a_message_without_text_is_named_by_its_class() -> None:
    assert parse_error_reason(BadHttpMessage("")) == "BadHttpMessage"
