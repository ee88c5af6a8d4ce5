"""Simulator, the shell: the websockets server, its connections, tick loops and lifecycle."""

# Rules of this module:
# 1. Simulator is the shell: it owns the websockets server, one Link per connection, the tick loops and
#    (through its FaultInjector) the fault tasks. It writes pre-built WebSocket frames straight to the
#    transport, in call order.
# 2. The token never reaches a log line, a repr or state(); the websockets logger is filtered.

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import ssl
import time
import urllib.parse
from collections.abc import Callable
from typing import Any, Self

import msgspec
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from actors.sim.admin import AdminAPI
from actors.sim.faults import FaultInjector
from actors.sim.frames import book_frame, encode, error_frame, trade_frame, ws_text_frame
from actors.sim.link import Link
from actors.sim.market import BASE_PRICES, Market, generated_codes
from actors.sim.protocol import (
    CLOSE_NORMAL,
    CLOSE_POLICY,
    DEFAULT_CONN_GAP_S,
    DEFAULT_HEARTBEAT_TIMEOUT_S,
    DEFAULT_TOKEN_GAP_S,
    ENDPOINT_PATHS,
    ERROR_MESSAGES,
    HEARTBEAT_TIMEOUT_REASON,
    MSG_HEADER_INVALID,
    PLAN_LIMITS,
    PlanLimits,
    endpoint_path,
)
from actors.sim.state import SILENT_FAULTS, Outcome, SimState

log = logging.getLogger("tickvisor.simulator")

DEFAULT_TICK_RATE = 2.0  # trades per second per subscribed code
DEFAULT_BOOK_RATE = 1.0  # books per second per book-subscribed code
DEFAULT_EXTRA_CODES = 200  # generated codes per endpoint, so benchmarks can subscribe 100+

CLOSE_TIMEOUT_S = 2.0  # closing handshake; short so stop() is quick
OPEN_TIMEOUT_S = 5.0
WRITE_LIMIT_BYTES = (1 << 20, 1 << 18)  # transport high/low water marks; bursts drain at the high mark


# --- Logging without the token ---------------------------------------------------------------------------


class _RedactToken(logging.Filter):
    """Replace the token with "***" in a record's message and traceback."""

    def __init__(self, *tokens: str) -> None:
        super().__init__()
        self._secrets = tuple({form for t in tokens for form in (t, urllib.parse.quote(t, safe=""))} - {""})

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self._redact(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = self._redact(logging.Formatter().formatException(record.exc_info))
        return True


# --- The shell ---------------------------------------------------------------------------------------------


class Simulator:
    """The AllTick simulator on an asyncio event loop. See actors.sim's docstring for the behaviour.

    Args:
        host: interface to bind.
        port: TCP port; 0 picks a free one (``start()`` returns it).
        token: the only valid token.
        heartbeat_timeout: seconds without 22000 before a connection is closed.
        plan: free, basic, premium or pro (PROTOCOL.md "Limits").
        max_connections: overrides the plan's connections per token per path.
        max_codes: overrides the plan's codes per connection.
        tick_rate: trade pushes per second per subscribed code (0 = none).
        book_rate: book pushes per second per book-subscribed code (0 = none).
        codes: generated codes per endpoint.
        seed: random-walk seed.
        conn_gap_s: min seconds between subscription requests on one connection.
        token_gap_s: min seconds between subscription requests across connections of the token on a path.
        tls: serve wss:// with this server-side SSL context (None: plain ws://).
        more_tokens: further valid tokens, each with its own connection limit and rate clocks (token
            number 1, 2... in ``state()``); ``revoke`` makes one invalid.
        clock: the monotonic seconds that the rate limits, the heartbeat timeout and ``requests`` are
            counted in (a test passes a fake one to control them).
        clock_offset_s: seconds added to every pushed ``tick_time``: the server's wall clock shifted, so
            tests see a close, a weekend or an open without waiting (the ``clock`` fault changes it).

    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str = "test-token",  # noqa: S107
        heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT_S,
        plan: str = "pro",
        *,
        max_connections: int | None = None,
        max_codes: int | None = None,
        tick_rate: float = DEFAULT_TICK_RATE,
        book_rate: float = DEFAULT_BOOK_RATE,
        codes: int = DEFAULT_EXTRA_CODES,
        seed: int = 0,
        conn_gap_s: float = DEFAULT_CONN_GAP_S,
        token_gap_s: float = DEFAULT_TOKEN_GAP_S,
        tls: ssl.SSLContext | None = None,
        more_tokens: tuple[str, ...] = (),
        clock: Callable[[], float] = time.monotonic,
        clock_offset_s: float = 0.0,
    ) -> None:
        if plan not in PLAN_LIMITS:
            raise ValueError(f"unknown plan {plan!r}, expected one of {sorted(PLAN_LIMITS)}")
        base = PLAN_LIMITS[plan]
        self.host = host
        self.port = port
        self.plan = plan
        self.limits = PlanLimits(
            max_connections=base.max_connections if max_connections is None else max_connections,
            max_codes=base.max_codes if max_codes is None else max_codes,
        )
        self.tick_rate = tick_rate
        self.tls = tls
        self.book_rate = book_rate
        self._token = token
        self._clock = clock
        self._tokens = (token, *more_tokens)
        self._revoked: set[int] = set()
        catalog = {
            path: [*BASE_PRICES[path], *generated_codes(path, codes)] for path in ENDPOINT_PATHS.values()
        }
        self.sim = SimState(
            catalog=catalog,
            limits=self.limits,
            conn_gap_s=conn_gap_s,
            token_gap_s=token_gap_s,
            heartbeat_timeout=heartbeat_timeout,
        )
        self.market = Market(catalog, seed=seed)
        self.market.clock_offset_ms = round(clock_offset_s * 1000)
        self.links: dict[int, Link] = {}
        self._faults = FaultInjector(self.sim, self.market, self.links, clock)
        self._http = AdminAPI(token, state=self.state, inject=self.inject)
        self._server: Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._ws_logger = logging.getLogger("tickvisor.simulator.ws")
        self._redact = _RedactToken(*self._tokens)  # websockets logs request paths at DEBUG, tokens included

    def __repr__(self) -> str:
        return (
            f"Simulator(host={self.host!r}, port={self.port}, plan={self.plan!r}, token='***', "
            f"connections={len(self.links)})"
        )

    # Lifecycle ------------------------------------------------------------------------------------

    async def start(self) -> int:
        """Bind and serve; return the bound port."""
        self._ws_logger.addFilter(self._redact)
        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            process_request=self._http.process_request,
            compression=None,  # pushes are pre-built raw frames
            ping_interval=None,  # PROTOCOL.md: the server sends no heartbeats of its own
            close_timeout=CLOSE_TIMEOUT_S,
            open_timeout=OPEN_TIMEOUT_S,
            write_limit=WRITE_LIMIT_BYTES,
            logger=self._ws_logger,
            ssl=self.tls,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        if self.tick_rate > 0:
            self._tasks.append(asyncio.create_task(self._tick_loop(self.tick_rate, self._push_trades)))
        if self.book_rate > 0:
            self._tasks.append(asyncio.create_task(self._tick_loop(self.book_rate, self._push_books)))
        log.info(
            "simulator listening on %s:%d (plan %s, %s, token ***)",
            self.host,
            self.port,
            self.plan,
            self.limits,
        )
        return self.port

    async def stop(self) -> None:
        """Stop the tick loops, close every connection and the listening socket."""
        for task in self._tasks:
            task.cancel()
        for link in list(self.links.values()):
            if link.burst is not None:
                link.burst.cancel()
            if link.conn.faults & SILENT_FAULTS:  # they would not complete a closing handshake
                link.ws.transport.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self._ws_logger.removeFilter(self._redact)
        log.info("simulator stopped")

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def url(self, endpoint: str) -> str:
        """The ws:// URL, token included, of endpoint "stock" or "forex_crypto" (or a path)."""
        path = endpoint_path(endpoint)
        if path is None:
            raise ValueError(f"unknown endpoint {endpoint!r}, expected one of {sorted(ENDPOINT_PATHS)}")
        scheme = "ws" if self.tls is None else "wss"
        return f"{scheme}://{self.host}:{self.port}{path}?token={urllib.parse.quote(self._token, safe='')}"

    def admin_url(self, action: str = "state", **params: object) -> str:
        """The http:// URL of ``/admin/<action>`` with the token and params.

        For example ``admin_url("fault", name="drop")``.
        """
        query = urllib.parse.urlencode(
            {**{k: v for k, v in params.items() if v is not None}, "token": self._token}
        )
        scheme = "http" if self.tls is None else "https"
        return f"{scheme}://{self.host}:{self.port}/admin/{action}?{query}"

    def state(self) -> dict[str, Any]:
        """A JSON-able snapshot: see actors.sim's docstring. Call it on the simulator's loop."""
        state = self.sim.snapshot()
        market = self.market
        state["code_faults"] = {"muted": sorted(market.muted), "tick_time_skew_ms": dict(market.skew_ms)}
        state["clock_offset_s"] = market.clock_offset_ms / 1000
        return state

    # WebSocket connections ------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        split = urllib.parse.urlsplit(ws.request.path)
        path = split.path
        token = urllib.parse.parse_qs(split.query).get("token", [""])[-1]
        host, port, *_ = ws.remote_address
        peer = f"{host}:{port}"
        number = next(
            (i for i, t in enumerate(self._tokens) if hmac.compare_digest(token.encode(), t.encode())), None
        )
        if number is None or number in self._revoked:
            # PROTOCOL.md "Error codes": 401 token invalid.
            self.sim.bad_token()
            log.info("connection from %s on %s refused: 401 token invalid (token ***)", peer, path)
            await self._refuse(ws, 401)
            return
        conn = self.sim.admit(path, peer, self._clock(), number)
        if conn is None:
            log.info("connection from %s on %s refused: 606", peer, path)
            await self._refuse(ws, 606)
            return
        link = Link(ws, conn)
        self.links[conn.id] = link
        link.watchdog = asyncio.create_task(self._watchdog(link))
        log.info("connection %d open from %s on %s", conn.id, peer, path)
        try:
            async for message in ws:
                if "blackhole" in conn.faults:
                    ws.transport.pause_reading()  # websockets' own flow control may have resumed it
                self._receive(link, message)
        except ConnectionClosed:
            pass
        finally:
            link.watchdog.cancel()
            if link.burst is not None:
                link.burst.cancel()
            del self.links[conn.id]
            self.sim.close(conn.id)
            log.info("connection %d closed (code %s)", conn.id, ws.close_code)

    def revoke(self, number: int) -> int:
        """Make token ``number`` invalid (it expired): its open connections get 401 and are closed, new
        ones are refused with 401. Returns how many were open. Call it on the simulator's loop.
        """
        self._revoked.add(number)
        links = [link for link in self.links.values() if link.conn.token == number]
        for link in links:
            self._tasks.append(asyncio.get_running_loop().create_task(self._refuse(link.ws, 401)))
        return len(links)

    async def _refuse(self, ws: ServerConnection, ret: int) -> None:
        with contextlib.suppress(ConnectionClosed):
            await ws.send(encode(error_frame(ret)), text=True)
            await ws.close(CLOSE_POLICY, ERROR_MESSAGES[ret])

    def _receive(self, link: Link, message: bytes | str) -> None:
        try:
            outcome = self.sim.receive(link.id, message, self._clock())
        except Exception:  # the one catch-all, at the frame boundary: a server bug must not kill the socket
            log.exception("connection %d: failed to handle a frame", link.id)
            outcome = Outcome(reply=error_frame(400, MSG_HEADER_INVALID))
        if outcome.reply is None:
            return
        log.debug("connection %d: %s -> %s", link.id, outcome.reply["cmd_id"], outcome.reply["ret"])
        frames = [ws_text_frame(encode(outcome.reply))]
        now_ns = time.time_ns()
        snapshots = 0
        # The vendor's snapshot: the latest known tick of each newly added code, with its last seq.
        for code in outcome.new_trades:
            last = self.market.instrument(code).last_trade
            if last is not None:
                frames.append(trade_frame(msgspec.structs.replace(last, sent_ns=now_ns)))
                snapshots += 1
        for code in outcome.new_books:
            book = self.market.instrument(code).last_book
            if book is not None:
                frames.append(
                    book_frame(msgspec.structs.replace(book, sent_ns=now_ns), link.conn.books[code])
                )
                snapshots += 1
        if link.write(frames):
            self.sim.count_pushes(link.id, snapshots)

    async def _watchdog(self, link: Link) -> None:
        while True:
            remaining = self.sim.heartbeat_remaining(link.id, self._clock())
            if remaining > 0:
                await asyncio.sleep(remaining)
                continue
            log.info("connection %d: heartbeat timeout", link.id)
            await link.ws.close(CLOSE_NORMAL, HEARTBEAT_TIMEOUT_REASON)
            return

    # Pushes ---------------------------------------------------------------------------------------

    async def _tick_loop(self, rate: float, push: Callable[[], None]) -> None:
        period = 1.0 / rate
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while True:
            deadline += period
            try:
                push()
            except Exception:  # keep the market running; a bug here shows in the log
                log.exception("push failed")
            delay = deadline - loop.time()
            if delay < 0:  # fell behind (slow machine): skip, do not catch up in a burst
                deadline = loop.time()
                delay = 0
            await asyncio.sleep(delay)

    def _push_trades(self) -> None:
        now_ns = time.time_ns()
        links = self.links
        muted = self.market.muted
        for code, conn_ids in self.sim.trade_subscribers.items():
            if code in muted:
                continue
            targets = [link for cid in conn_ids if (link := links.get(cid)) is not None and link.pushable()]
            if not targets:
                continue
            frame = trade_frame(self.market.next_trade(code, now_ns))
            for link in targets:
                link.write([frame])
                self.sim.count_pushes(link.id, 1)

    def _push_books(self) -> None:
        now_ns = time.time_ns()
        links = self.links
        muted = self.market.muted
        for code, depths in self.sim.book_subscribers.items():
            if code in muted:
                continue
            targets = [
                (link, depth)
                for cid, depth in depths.items()
                if (link := links.get(cid)) is not None and link.pushable()
            ]
            if not targets:
                continue
            book = self.market.next_book(code, now_ns)
            frames: dict[int, bytes] = {}
            for link, depth in targets:
                frame = frames.get(depth)
                if frame is None:
                    frame = frames[depth] = book_frame(book, depth)
                link.write([frame])
                self.sim.count_pushes(link.id, 1)

    # Faults ---------------------------------------------------------------------------------------

    def inject(
        self, fault: str, *, path: str | None = None, conn: int | None = None, **params: object
    ) -> list[int]:
        """Inject a fault into live connections; call it on the simulator's loop. See FaultInjector.inject."""
        return self._faults.inject(fault, path=path, conn=conn, **params)
