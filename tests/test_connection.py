"""Tests of actors.connection: ``classify`` with websockets' and picows' real exception types (no Ray
needed), and the Connection shell against the real simulator on 127.0.0.1 (tests marked ``ray``).
"""

from __future__ import annotations

import asyncio
import ssl
from http import HTTPStatus

from picows import (
    WSCloseCode,
    WSHandshakeError,
    WSInvalidMessageError,
    WSInvalidStatusError,
    WSInvalidUpgradeError,
    WSInvalidURL,
    WSProtocolError,
    WSUpgradeResponse,
)
from websockets.datastructures import Headers
from websockets.exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidMessage,
    InvalidStatus,
    InvalidUpgrade,
    InvalidURI,
)
from websockets.frames import Close
from websockets.http11 import Response

from actors.connection import classify
from actors.core.errors import (
    ConfigError,
    ConnectionSilent,
    EscalationError,
    InvalidCode,
    InvalidTransition,
    MalformedFrame,
    ProtocolViolation,
    SubscriptionRefused,
    VendorError,
)
from actors.transport import SocketClosed


def refused(status: int) -> InvalidStatus:
    """The exception websockets raises when the server answers the handshake with HTTP ``status``."""
    return InvalidStatus(Response(status, "", Headers()))


def picows_refused(status: int) -> WSInvalidStatusError:
    """The exception picows raises when the server answers the handshake with HTTP ``status``."""
    response = WSUpgradeResponse.create_error_response(HTTPStatus(status))
    return WSInvalidStatusError(f"expected 101, received {status}", None, None, response)


RETRY: dict[str, BaseException] = {
    "429 rate limit": VendorError(429, "rate limit", 22004, 1),
    "606 too many": VendorError(606, "too many requests and connection will be closed"),
    "400 bad request": VendorError(400, "request data param invalid", 22004, 2),
    "600 code invalid": VendorError(600, "code invalid", 22004, 3),
    "500 other ret": VendorError(500, "internal"),
    "silent": ConnectionSilent(15.2, 15.0),
    "protocol violation": ProtocolViolation("a 22001 nobody asked for"),
    "malformed frame": MalformedFrame("not JSON", b"{"),
    "refused": ConnectionRefusedError(111, "Connection refused"),
    "reset": ConnectionResetError(104, "Connection reset by peer"),
    "os error": OSError(101, "Network is unreachable"),
    "timeout": TimeoutError("handshake timed out"),
    "eof": EOFError(),
    "incomplete read": asyncio.IncompleteReadError(b"ab", 10),
    "ssl error": ssl.SSLError("decryption failed"),
    "closed, no close frame": ConnectionClosed(None, None),
    "closed with 1008": ConnectionClosedError(Close(1008, "policy"), None),
    "closed normally": ConnectionClosedOK(Close(1000, ""), Close(1000, ""), rcvd_then_sent=True),
    "bad handshake": InvalidHandshake(),
    "garbled response": InvalidMessage("did not receive a valid HTTP response"),
    "no upgrade": InvalidUpgrade("Upgrade", "h2"),
    "HTTP 503": refused(503),
    "HTTP 502": refused(502),
    "HTTP 429": refused(429),
    "group of transient errors": ExceptionGroup("two", [ConnectionResetError(), TimeoutError()]),
    "picows: closed by the server": SocketClosed(1008, "token invalid", "server"),
    "picows: dropped": SocketClosed(None),
    "picows: no pong": SocketClosed(1001, "no pong: peer has not replied", "client"),
    "picows: broken framing": WSProtocolError(WSCloseCode.PROTOCOL_ERROR, "bad opcode"),
    "picows: bad handshake": WSHandshakeError("connection closed during handshake"),
    "picows: garbled response": WSInvalidMessageError("invalid HTTP response"),
    "picows: no upgrade": WSInvalidUpgradeError("Upgrade", "h2"),
    "picows: HTTP 503": picows_refused(503),
    "picows: HTTP 429": picows_refused(429),
}

FATAL: dict[str, BaseException] = {
    "401 token invalid": VendorError(401, "token invalid"),
    "603 token level not enough": VendorError(603, "token level not enough", 22004, 4),
    "604 code unauthorized": VendorError(604, "code unauthorized", 22004, 5),
    "config error": ConfigError("feed.plan", "unknown plan 'gold'"),
    "invalid code": InvalidCode("NASDAQ:AAPL", "not in the vendor's notation", "AAPL.US"),
    "invalid transition": InvalidTransition("can't give a verdict before connected"),
    "subscription refused": SubscriptionRefused({}),
    "escalation": EscalationError("connection-stock-0", 5, 60.0, "boom"),
    "HTTP 401": refused(401),
    "HTTP 403": refused(403),
    "HTTP 404 (wrong path)": refused(404),
    "HTTP 400": refused(400),
    "bad URI": InvalidURI("http://example", "scheme isn't ws or wss"),
    "certificate": ssl.SSLCertVerificationError("certificate verify failed"),
    "keyboard interrupt": KeyboardInterrupt(),
    "system exit": SystemExit(1),
    "cancelled": asyncio.CancelledError(),
    "unknown bug": KeyError("oops"),
    "value error": ValueError("bug"),
    "picows: HTTP 401": picows_refused(401),
    "picows: HTTP 404 (wrong path)": picows_refused(404),
    "picows: bad URI": WSInvalidURL("http://example", "scheme isn't ws or wss"),
    "group with a fatal error": ExceptionGroup(
        "two", [ConnectionResetError(), VendorError(401, "token invalid")]
    ),
}


class ClassifyTests:
    """None means retry after a backoff delay; the exception itself means stop and report."""

    def test_retryable(self) -> None:
        for exc in RETRY.values():
            assert classify(exc) is None

    def test_fatal(self) -> None:
        for exc in FATAL.values():
            assert classify(exc) is exc
