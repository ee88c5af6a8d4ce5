"""The HTTP side of the simulator's port: the admin API, and 404 for any other non-endpoint path.

``/admin/state`` and ``/admin/fault`` are described in actors.sim's docstring.
"""

from __future__ import annotations

import hmac
import http
import urllib.parse
from collections.abc import Callable
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from actors.sim.frames import encode
from actors.sim.protocol import ENDPOINT_PATHS


class AdminAPI:
    """Answers plain HTTP GETs before the WebSocket handshake; every admin request needs the token.

    Args:
        token: the only valid token.
        state: returns the simulator's state() dict.
        inject: the simulator's inject(fault, *, path, conn, **params).

    """

    def __init__(
        self, token: str, *, state: Callable[[], dict[str, Any]], inject: Callable[..., list[int]]
    ) -> None:
        self._token = token
        self.state = state
        self.inject = inject

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Answer an admin request or an unknown path (404); None lets the WebSocket handshake go on."""
        split = urllib.parse.urlsplit(request.path)
        if split.path.startswith("/admin/"):
            return self._admin(connection, split.path, urllib.parse.parse_qs(split.query))
        if split.path not in ENDPOINT_PATHS.values():
            return connection.respond(http.HTTPStatus.NOT_FOUND, "Not Found\n")
        return None

    def _admin(self, connection: ServerConnection, path: str, query: dict[str, list[str]]) -> Response:
        def reply(status: http.HTTPStatus, body: object) -> Response:
            response = connection.respond(status, encode(body).decode())
            del response.headers["Content-Type"]
            response.headers["Content-Type"] = "application/json"
            return response

        params = {key: values[-1] for key, values in query.items()}
        if not hmac.compare_digest(params.pop("token", "").encode(), self._token.encode()):
            return reply(http.HTTPStatus.UNAUTHORIZED, {"error": "token invalid"})
        if path == "/admin/state":
            return reply(http.HTTPStatus.OK, self.state())
        if path == "/admin/fault":
            name = params.pop("name", "")
            target = params.pop("path", None)
            conn = params.pop("conn", None)
            try:
                affected = self.inject(name, path=target, conn=None if conn is None else int(conn), **params)
            except (ValueError, TypeError) as exc:
                return reply(http.HTTPStatus.BAD_REQUEST, {"error": str(exc)})
            return reply(http.HTTPStatus.OK, {"affected": affected})
        return reply(http.HTTPStatus.NOT_FOUND, {"error": f"unknown admin path {path}"})
