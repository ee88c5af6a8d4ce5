"""A local AllTick real-time WebSocket server, faithful to /work/shared/PROTOCOL.md, with fault injection.

The connection actors are tested and benchmarked against this server. It is self-contained (stdlib,
websockets and msgspec only) and deliberately imports nothing from ``actors``, so that a client bug
and a server bug cannot cancel out.

Command line
============

    python scripts/simulator.py --host 127.0.0.1 --port 8765 --token TOKEN --heartbeat-timeout 30

    --plan free|basic|premium|pro   connection and code limits of PROTOCOL.md "Limits" (default pro)
    --max-connections N             connections per token per endpoint path (overrides the plan)
    --max-codes N                   codes per connection, trades and book separately (overrides the plan)
    --tick-rate R                   22998 trade pushes per second per subscribed code (default 2.0, 0 = none)
    --book-rate R                   22999 book pushes per second per book-subscribed code (default 1.0)
    --codes N                       extra codes per endpoint: S0001.US.. (stock), C0001USDT.. (forex/crypto),
                                    default 200
    --seed N                        random-walk seed (default 0)
    --conn-gap-s S                  min seconds between subscription requests on one connection (default 1.0)
    --token-gap-s S                 min seconds between subscription requests on different connections of
                                    the token on one path (default 3.0, 0 disables)
    --token-env NAME                read the token from this environment variable instead of --token
                                    (keeps it out of `ps`); one of the two is required
    --log-level LEVEL               stderr logging level (default INFO); the token is logged as "***"

``--port 0`` picks a free port. On start the server prints exactly one line to stdout,
``SIMULATOR LISTENING <host>:<port>``, and flushes. SIGINT or SIGTERM closes it with exit code 0.

Endpoints (PROTOCOL.md "Endpoints"): ``/quote-stock-b-ws-api`` and ``/quote-b-ws-api``, token in
``?token=``. A wrong or missing token gets a 401 error frame, then close code 1008. An unknown path is
refused with HTTP 404. A connection over the limit gets a 606 error frame, then close code 1008. A
connection without a 22000 for ``--heartbeat-timeout`` seconds is closed with 1000 "heartbeat timeout".

Our readings, where the brief or PROTOCOL.md leave room:

* A subscription request (22002/22004/22006) is "accepted" when it is answered 200; only accepted
  requests start the ``--conn-gap-s`` / ``--token-gap-s`` clocks. The rate check comes first, so a
  too-early malformed request is answered 429, not 400. Closed connections still count for the token gap.
* Every code in the request is checked (also those past the code limit); one unknown code makes the
  whole request 600 and the previous subscription stays in force.
* Book depth: ``min(depth_level or 1, class maximum)``; class maxima are forex/metals/oil/CFD 1 (volume
  ""), US 1, crypto and A-shares 5, HK 10 (PROTOCOL.md: "without depth_level the server sends one level").
* ``data`` is required on every request, 22000 included (PROTOCOL.md "Frame envelope"); without it: 400.
* Trade and book pushes carry an extra ``sent_ns`` (``time.time_ns()`` at send) for latency benchmarks.
  Trade ``seq`` and book ``seq`` are separate counters per code, global to the server.
* The server sends no WebSocket pings of its own; it answers the client's.
* A client with 16 MiB unsent in the server's buffer misses normal ticks (seq gaps) until it catches up.

HTTP admin API (same port, plain GET, ``token`` query parameter required, else HTTP 401)
======================================================================================

    GET /admin/state?token=T                                  -> JSON of Simulator.state()
    GET /admin/fault?token=T&name=stall&path=/quote-b-ws-api&conn=3&count=5...
                                                              -> {"affected": [connection ids]}

``path`` may be a path or an endpoint name (``stock``, ``forex_crypto``); omitted = every path. ``conn``
omitted = every current connection on the path. An unknown fault or bad parameter is HTTP 400.

Faults (``Simulator.inject(name, *, path=None, conn=None, **params)`` or ``/admin/fault``)
========================================================================================

    stall      keep reading (WebSocket pings are answered), discard every request, send nothing, never
               close, not even on heartbeat timeout: the "false-alive" socket
    blackhole  stop reading (transport.pause_reading) and writing: pings go unanswered; never close
    drop       tear the TCP connection down without a close frame (transport.abort)
    ghost      push ``count`` (default 5) trades for ``code``, a code the connection did not subscribe
               (default: the first such code of the path)
    malformed  push one malformed frame; ``kind``: json (invalid JSON), fields (22998 without price),
               types (price as a JSON number); default json
    burst      push ``count`` (default 100000) trades round-robin over the subscribed codes, pre-encoded
               and written in bulk as raw frames with flow control; ``rate`` (trades/s) paces them in
               1 ms slices instead. Normal pushes to that connection pause meanwhile; seq stays increasing
    refuse     the next ``count`` (default 1) NEW connections on the path (any path if omitted) get 606
               and are closed; returns []
    reply      answer the next subscription request with ``ret`` (default 603) and ``msg`` (default: the
               PROTOCOL.md message of ret); the subscription stays unchanged
    clear      remove stall, blackhole and reply, and stop a running burst

State (``Simulator.state()``, ``/admin/state``)
===============================================

    {"connections": [{"id", "path", "peer", "open", "trades": [sorted codes], "books": [sorted codes],
                      "faults": [...], "heartbeats": n, "pushes": n,
                      "requests": [[monotonic_time, cmd_id, ret], ...],   # subscription requests only
                      "refused": {"429": n, "400": n, ...}}, ...],
     "closed": [same, the last 100 closed connections],
     "totals": {"connections_opened", "refused_606", "refused_401", "pushes", "429", "400", "600", ...}}

``max_requests_in_window(conn_state, window_s)`` is the largest number of subscription requests a
connection sent within any ``window_s`` seconds.

In-process use: ``Simulator`` (asyncio, ``await sim.start()`` returns the port) and ``SimulatorThread``
(its own event loop in a daemon thread, for synchronous callers such as Ray tests; a context manager).
"""

# Rules of this module:
# 1. SimState is the sans-I/O core: frames and times go in, responses and decisions come out. It owns
#    subscriptions, limits, rate clocks, faults' bookkeeping and counters. No socket, no clock.
# 2. Market owns prices and per-code sequence numbers. Prices are integers of 10**-dp units, so every
#    price, volume and turnover string is exact.
# 3. Simulator is the shell: it owns the websockets server, one Link per connection, the tick loops and
#    the fault tasks. It writes pre-built WebSocket frames straight to the transport, in call order.
# 4. The token never reaches a log line, a repr or state(); the websockets logger is filtered.

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import enum
import hmac
import http
import itertools
import logging
import os
import random
import signal
import struct
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import msgspec
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

__all__ = [
    "ENDPOINT_PATHS",
    "FAULTS",
    "PLAN_LIMITS",
    "PlanLimits",
    "SimState",
    "Simulator",
    "SimulatorThread",
    "main",
    "max_requests_in_window",
]

log = logging.getLogger("tickvisor.simulator")

# --- Protocol constants -------------------------------------------------------------------------------

STOCK_PATH = "/quote-stock-b-ws-api"  # PROTOCOL.md "Endpoints"
FOREX_CRYPTO_PATH = "/quote-b-ws-api"  # PROTOCOL.md "Endpoints"
ENDPOINT_PATHS: Mapping[str, str] = {"stock": STOCK_PATH, "forex_crypto": FOREX_CRYPTO_PATH}

CMD_HEARTBEAT = 22000  # PROTOCOL.md "Commands"
CMD_SUBSCRIBE_BOOK = 22002
CMD_SUBSCRIBE_TRADES = 22004
CMD_CANCEL = 22006
CMD_TRADE_PUSH = 22998
CMD_BOOK_PUSH = 22999
SUBSCRIPTION_CMDS = frozenset({CMD_SUBSCRIBE_BOOK, CMD_SUBSCRIBE_TRADES, CMD_CANCEL})  # rate limited

CANCEL_ALL, CANCEL_BOOK, CANCEL_TRADES = 0, 1, 2  # PROTOCOL.md 22006 cancel_type

UINT32_MAX = 2**32 - 1  # PROTOCOL.md: cmd_id and seq_id are uint32
TRACE_MAX_CHARS = 64  # PROTOCOL.md: trace string <= 64 chars

OK = 200
MSG_OK = "ok"
MSG_HEADER_INVALID = "request header param invalid"
MSG_DATA_INVALID = "request data param invalid"
ERROR_MESSAGES: Mapping[int, str] = {  # PROTOCOL.md "Error codes"
    200: MSG_OK,
    400: MSG_HEADER_INVALID,
    401: "token invalid",
    429: "rate limit",
    600: "code invalid",
    603: "token level not enough",
    604: "code unauthorized",
    606: "too many requests and connection will be closed",
}

CLOSE_NORMAL = 1000  # RFC 6455: heartbeat timeout
CLOSE_POLICY = 1008  # RFC 6455 policy violation: after the 401 and 606 error frames
HEARTBEAT_TIMEOUT_REASON = "heartbeat timeout"


@dataclasses.dataclass(frozen=True, slots=True)
class PlanLimits:
    """Limits of one plan. PROTOCOL.md "Limits"; both endpoints are counted separately."""

    max_connections: int  # per token per endpoint path
    max_codes: int  # per connection, trades and order book separately


PLAN_LIMITS: Mapping[str, PlanLimits] = {  # PROTOCOL.md "Limits"
    "free": PlanLimits(max_connections=1, max_codes=5),
    "basic": PlanLimits(max_connections=1, max_codes=100),
    "premium": PlanLimits(max_connections=3, max_codes=200),
    "pro": PlanLimits(max_connections=10, max_codes=3000),
}

DEFAULT_CONN_GAP_S = 1.0  # PROTOCOL.md "Limits": one subscription request per second per connection
DEFAULT_TOKEN_GAP_S = 3.0  # PROTOCOL.md "Limits": 3 s between requests across connections of one token
DEFAULT_HEARTBEAT_TIMEOUT_S = 30.0  # PROTOCOL.md "Liveness"
DEFAULT_TICK_RATE = 2.0  # trades per second per subscribed code
DEFAULT_BOOK_RATE = 1.0  # books per second per book-subscribed code
DEFAULT_EXTRA_CODES = 200  # generated codes per endpoint, so benchmarks can subscribe 100+
CLOSED_KEPT = 100  # closed connections kept in state()

CLOSE_TIMEOUT_S = 2.0  # closing handshake; short so stop() is quick
OPEN_TIMEOUT_S = 5.0
WRITE_LIMIT_BYTES = (1 << 20, 1 << 18)  # transport high/low water marks; bursts drain at the high mark
SLOW_CONSUMER_BYTES = 16 << 20  # normal pushes skip a connection with this much unsent
BURST_CHUNK_FRAMES = 2000  # frames pre-encoded and written per writelines() call
BURST_SLICE_S = 0.001  # pacing slice of a rate-limited burst
BURST_ENCODE_SLICE_FRAMES = 5000  # an unpaced burst encodes this many frames between yields to the loop
BURST_BLOB_FRAMES = 4000  # ... and writes them joined, this many per write

# --- Products ------------------------------------------------------------------------------------------


class AssetClass(enum.IntEnum):
    """What a code trades as; decides book depth, decimals and whether volumes exist."""

    US = 1
    HK = 2
    CN = 3  # A-shares, .SH and .SZ
    FX = 4  # forex, precious metals, crude oil, CFD indices: no volume
    CRYPTO = 5


BOOK_DEPTH_MAX: Mapping[AssetClass, int] = {  # PROTOCOL.md "22999 order-book push"
    AssetClass.US: 1,
    AssetClass.HK: 10,
    AssetClass.CN: 5,
    AssetClass.FX: 1,
    AssetClass.CRYPTO: 5,
}

# Base products and their opening prices; the decimals of each string are the code's price decimals.
BASE_PRICES: Mapping[str, Mapping[str, str]] = {
    STOCK_PATH: {
        "AAPL.US": "189.2300",
        "TSLA.US": "248.5000",
        "MSFT.US": "415.1000",
        "NVDA.US": "121.4400",
        "AMZN.US": "186.7500",
        "GOOGL.US": "171.3300",
        "META.US": "512.6000",
        "700.HK": "380.200",
        "1288.HK": "3.850",
        "9988.HK": "82.450",
        "600519.SH": "1520.00",
        "601318.SH": "42.35",
        "000627.SZ": "3.12",
        "000001.SZ": "10.85",
    },
    FOREX_CRYPTO_PATH: {
        "EURUSD": "1.08350",
        "USDJPY": "151.420",
        "GBPUSD": "1.26710",
        "AUDUSD": "0.65830",
        "USDCHF": "0.90120",
        "XAUUSD": "2345.60",
        "XAGUSD": "29.125",
        "USOIL": "78.45",
        "UKOIL": "82.90",
        "US500": "5210.5",
        "BTCUSDT": "67250.50",
        "ETHUSDT": "3512.25",
        "SOLUSDT": "152.40",
    },
}


def generated_codes(path: str, count: int) -> list[str]:
    """The ``--codes`` extra codes of an endpoint path: ``S0001.US``.. or ``C0001USDT``.."""
    if path == STOCK_PATH:
        return [f"S{i:04d}.US" for i in range(1, count + 1)]
    return [f"C{i:04d}USDT" for i in range(1, count + 1)]


def asset_class(code: str) -> AssetClass:
    """Classify a code by its suffix (codes of both paths are distinct)."""
    if code.endswith(".US"):
        return AssetClass.US
    if code.endswith(".HK"):
        return AssetClass.HK
    if code.endswith((".SH", ".SZ")):
        return AssetClass.CN
    if code.endswith("USDT"):
        return AssetClass.CRYPTO
    return AssetClass.FX


def format_units(units: int, dp: int) -> str:
    """Exact decimal string of ``units * 10**-dp`` (units >= 0): ``format_units(1892300, 4) == "189.2300"``."""
    if dp == 0:
        return str(units)
    digits = str(units).rjust(dp + 1, "0")
    return f"{digits[:-dp]}.{digits[-dp:]}"


def parse_units(text: str) -> tuple[int, int]:
    """Inverse of format_units: ``"189.2300"`` -> ``(1892300, 4)``."""
    whole, _, frac = text.partition(".")
    return int(whole + frac), len(frac)


# --- Push frames (msgspec Structs, encoded once per frame) ----------------------------------------------


class TradeData(msgspec.Struct, gc=False):
    """``data`` of a 22998 push (PROTOCOL.md), plus our ``sent_ns``."""

    code: str
    seq: int
    tick_time: int
    price: str
    volume: str
    turnover: str
    trade_direction: int
    sent_ns: int


class Level(msgspec.Struct, gc=False):
    """One book level: decimal strings; ``volume`` is "" for forex-like classes."""

    price: str
    volume: str


class BookData(msgspec.Struct, gc=False):
    """``data`` of a 22999 push (PROTOCOL.md), plus our ``sent_ns``."""

    code: str
    seq: int
    tick_time: int
    bids: list[Level]
    asks: list[Level]
    sent_ns: int


class TradePush(msgspec.Struct, gc=False):
    """A 22998 frame."""

    cmd_id: int
    data: TradeData


class BookPush(msgspec.Struct, gc=False):
    """A 22999 frame."""

    cmd_id: int
    data: BookData


_encode = msgspec.json.Encoder().encode
_decode_any = msgspec.json.Decoder().decode


def ws_text_frame(payload: bytes) -> bytes:
    """An unmasked, final WebSocket text frame (RFC 6455 5.2), as a server sends it."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 1 << 16:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload


def trade_frame(trade: TradeData) -> bytes:
    """The wire bytes of a 22998 push."""
    return ws_text_frame(_encode(TradePush(cmd_id=CMD_TRADE_PUSH, data=trade)))


# --- Market: prices and sequence numbers ----------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class Instrument:
    """Random-walk state of one code; prices in 10**-price_dp units."""

    code: str
    cls: AssetClass
    price: int
    price_dp: int
    step: int  # largest move per tick, in price units
    trade_seq: int = 0
    book_seq: int = 0
    last_trade: TradeData | None = None
    last_book: BookData | None = None


VOLUME_DP: Mapping[AssetClass, int] = {  # decimals of trade and book volumes
    AssetClass.US: 0,
    AssetClass.HK: 0,
    AssetClass.CN: 0,
    AssetClass.FX: 0,
    AssetClass.CRYPTO: 4,
}
TRADE_DIRECTIONS = (0, 1, 1, 2, 2)  # PROTOCOL.md: 0 default, 1 buy, 2 sell; mostly buys and sells
LOT: Mapping[AssetClass, int] = {AssetClass.US: 1, AssetClass.HK: 100, AssetClass.CN: 100, AssetClass.CRYPTO: 1}


class Market:
    """Prices, trade and book sequence numbers of every code, global to the server.

    ``seq`` is strictly increasing per code across all connections, so a reconnecting client
    continues where it left off. The last trade and book of each code are kept for snapshots.
    """

    def __init__(self, catalog: Mapping[str, Sequence[str]], *, seed: int) -> None:
        self._rng = random.Random(seed)
        self.instruments: dict[str, Instrument] = {}
        for path, codes in catalog.items():
            base = BASE_PRICES.get(path, {})
            for code in codes:
                self.instruments[code] = self._new_instrument(code, base.get(code))

    def _new_instrument(self, code: str, opening: str | None) -> Instrument:
        cls = asset_class(code)
        if opening is None:
            dp = 4
            price = self._rng.randrange(5 * 10**dp, 500 * 10**dp)
        else:
            price, dp = parse_units(opening)
        return Instrument(code=code, cls=cls, price=price, price_dp=dp, step=max(1, price // 5000))

    def instrument(self, code: str) -> Instrument:
        """The instrument of code, created on first use for codes outside the catalog (ghost pushes)."""
        inst = self.instruments.get(code)
        if inst is None:
            inst = self.instruments[code] = self._new_instrument(code, None)
        return inst

    def _walk(self, inst: Instrument) -> None:
        # random.random() rather than randint(): the burst fault calls this 100k times in a row.
        step = inst.step
        move = int(self._rng.random() * (2 * step + 1)) - step
        if inst.price + move < 10 * step:  # reflect at a floor: prices stay positive
            move = abs(move)
        inst.price += move

    def next_trade(self, code: str, now_ns: int) -> TradeData:
        """Advance code by one trade and return it (``sent_ns`` = now_ns)."""
        inst = self.instruments.get(code) or self.instrument(code)
        self._walk(inst)
        inst.trade_seq += 1
        rnd = self._rng.random
        cls = inst.cls
        if cls is AssetClass.FX:
            volume = turnover = "0"  # PROTOCOL.md: forex, metals and CFD indices carry no volume
        else:
            vol_dp = VOLUME_DP[cls]
            vol = (int(rnd() * 50) + 1) * LOT[cls] if vol_dp == 0 else int(rnd() * 50000) + 1
            volume = format_units(vol, vol_dp)
            turnover = format_units(inst.price * vol, inst.price_dp + vol_dp)
        trade = TradeData(
            code=code,
            seq=inst.trade_seq,
            tick_time=now_ns // 1_000_000,
            price=format_units(inst.price, inst.price_dp),
            volume=volume,
            turnover=turnover,
            trade_direction=TRADE_DIRECTIONS[int(rnd() * len(TRADE_DIRECTIONS))],
            sent_ns=now_ns,
        )
        inst.last_trade = trade
        return trade

    def next_book(self, code: str, now_ns: int) -> BookData:
        """Advance code by one book update with the class's maximum depth."""
        inst = self.instrument(code)
        self._walk(inst)
        inst.book_seq += 1
        depth = BOOK_DEPTH_MAX[inst.cls]
        rng = self._rng
        half = max(1, inst.step)

        def level(units: int) -> Level:
            if inst.cls is AssetClass.FX:
                return Level(price=format_units(units, inst.price_dp), volume="")
            vol_dp = VOLUME_DP[inst.cls]
            vol = rng.randint(1, 200) * LOT[inst.cls] if vol_dp == 0 else rng.randint(1, 500000)
            return Level(price=format_units(units, inst.price_dp), volume=format_units(vol, vol_dp))

        bids = [level(max(1, inst.price - half * (i + 1))) for i in range(depth)]
        asks = [level(inst.price + half * (i + 1)) for i in range(depth)]
        book = BookData(code=code, seq=inst.book_seq, tick_time=now_ns // 1_000_000, bids=bids, asks=asks,
                        sent_ns=now_ns)
        inst.last_book = book
        return book


def book_frame(book: BookData, depth: int) -> bytes:
    """The wire bytes of a 22999 push cut to ``depth`` levels per side."""
    if depth < len(book.bids) or depth < len(book.asks):
        book = msgspec.structs.replace(book, bids=book.bids[:depth], asks=book.asks[:depth])
    return ws_text_frame(_encode(BookPush(cmd_id=CMD_BOOK_PUSH, data=book)))


# --- SimState: the sans-I/O core -------------------------------------------------------------------------

FAULTS = ("stall", "blackhole", "drop", "ghost", "malformed", "burst", "refuse", "reply", "clear")
SILENT_FAULTS = frozenset({"stall", "blackhole"})  # nothing is sent, nothing closes
MALFORMED_KINDS = ("json", "fields", "types")


@dataclasses.dataclass(slots=True)
class ConnState:
    """What the server knows about one connection. Mutated only by SimState."""

    id: int
    path: str
    peer: str
    opened_at: float
    last_heartbeat: float
    open: bool = True
    trades: dict[str, None] = dataclasses.field(default_factory=dict)  # ordered set
    books: dict[str, int] = dataclasses.field(default_factory=dict)  # code -> served depth
    faults: set[str] = dataclasses.field(default_factory=set)
    reply: tuple[int, str] | None = None  # the "reply" fault's answer
    heartbeats: int = 0
    pushes: int = 0
    requests: list[tuple[float, int, int]] = dataclasses.field(default_factory=list)
    refused: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    last_accepted: float | None = None  # time of the last subscription request answered 200

    def snapshot(self) -> dict[str, Any]:
        """The JSON-able view used by state()."""
        faults = set(self.faults)
        if self.reply is not None:
            faults.add("reply")
        return {
            "id": self.id,
            "path": self.path,
            "peer": self.peer,
            "open": self.open,
            "trades": sorted(self.trades),
            "books": sorted(self.books),
            "faults": sorted(faults),
            "heartbeats": self.heartbeats,
            "pushes": self.pushes,
            "requests": [list(r) for r in self.requests],
            "refused": dict(self.refused),
        }


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """What the shell must do after one inbound frame: send ``reply`` (if any), then the snapshots."""

    reply: dict[str, Any] | None = None
    new_trades: tuple[str, ...] = ()  # newly subscribed trade codes: push their last trade
    new_books: tuple[str, ...] = ()  # newly subscribed book codes: push their last book


DISCARDED = Outcome()


def error_frame(ret: int, msg: str | None = None, *, cmd_id: int = 0, seq_id: int = 0,
                trace: str = "") -> dict[str, Any]:
    """A response or unsolicited error frame in PROTOCOL.md's envelope, keys in the vendor's order."""
    return {"ret": ret, "msg": ERROR_MESSAGES.get(ret, "error") if msg is None else msg,
            "cmd_id": cmd_id, "seq_id": seq_id, "trace": trace, "data": {}}


def _is_uint32(value: object) -> bool:
    return type(value) is int and 0 <= value <= UINT32_MAX


class _BadData(Exception):
    """A request's ``data`` is malformed: 400 "request data param invalid"."""


class SimState:
    """Subscriptions, limits, rate clocks and counters of every connection. No I/O, no clock.

    Args:
        catalog: the known codes of each endpoint path.
        limits: connections per path and codes per connection.
        conn_gap_s: min seconds between accepted subscription requests on one connection (0 = off).
        token_gap_s: min seconds between accepted subscription requests on different connections of
            the token on one path (0 = off).
        heartbeat_timeout: seconds without a 22000 before the connection is closed.
    """

    def __init__(self, *, catalog: Mapping[str, Sequence[str]], limits: PlanLimits, conn_gap_s: float,
                 token_gap_s: float, heartbeat_timeout: float) -> None:
        self.catalog = {path: frozenset(codes) for path, codes in catalog.items()}
        self.catalog_order = {path: tuple(codes) for path, codes in catalog.items()}
        self.limits = limits
        self.conn_gap_s = conn_gap_s
        self.token_gap_s = token_gap_s
        self.heartbeat_timeout = heartbeat_timeout
        self.conns: dict[int, ConnState] = {}  # open connections
        self.closed: collections.deque[ConnState] = collections.deque(maxlen=CLOSED_KEPT)
        self.trade_subscribers: dict[str, dict[int, None]] = {}  # code -> ordered set of conn ids
        self.book_subscribers: dict[str, dict[int, int]] = {}  # code -> conn id -> depth
        self.totals: collections.Counter[str] = collections.Counter(
            {"connections_opened": 0, "refused_606": 0, "refused_401": 0, "pushes": 0,
             "429": 0, "400": 0, "600": 0})
        self._refuse: collections.Counter[str | None] = collections.Counter()  # path (None = any) -> n
        self._last_accepted: dict[str, dict[int, float]] = {}  # path -> conn id -> time
        self._ids = itertools.count(1)

    # Connections ---------------------------------------------------------------------------------

    def admit(self, path: str, peer: str, now: float) -> ConnState | None:
        """Register a new connection with a valid token, or None when it must get 606 and be closed."""
        # PROTOCOL.md "Limits": connections beyond the limit are closed at once.
        if self._refuse[path] > 0 or self._refuse[None] > 0:
            self._refuse[path if self._refuse[path] > 0 else None] -= 1
            self.totals["refused_606"] += 1
            return None
        if sum(1 for c in self.conns.values() if c.path == path) >= self.limits.max_connections:
            self.totals["refused_606"] += 1
            return None
        conn = ConnState(id=next(self._ids), path=path, peer=peer, opened_at=now, last_heartbeat=now)
        self.conns[conn.id] = conn
        self.totals["connections_opened"] += 1
        return conn

    def bad_token(self) -> None:
        """Count a connection refused with 401."""
        self.totals["refused_401"] += 1

    def close(self, conn_id: int) -> None:
        """Forget an ended connection's subscriptions; keep its record in ``closed``."""
        conn = self.conns.pop(conn_id, None)
        if conn is None:
            return
        conn.open = False
        self._set_trades(conn, {})
        self._set_books(conn, {})
        self.closed.append(conn)

    def heartbeat_remaining(self, conn_id: int, now: float) -> float:
        """Seconds before the connection must be closed for lack of 22000; <= 0 means close it now.

        PROTOCOL.md "Liveness": no heartbeat for 30 s closes the connection. A stalled or blackholed
        connection never closes, so its clock is held at full.
        """
        conn = self.conns[conn_id]
        if conn.faults & SILENT_FAULTS:
            conn.last_heartbeat = now
            return self.heartbeat_timeout
        return conn.last_heartbeat + self.heartbeat_timeout - now

    def count_pushes(self, conn_id: int, n: int) -> None:
        """Count n push frames written to a connection."""
        conn = self.conns.get(conn_id)
        if conn is not None:
            conn.pushes += n
        self.totals["pushes"] += n

    # Faults bookkeeping ---------------------------------------------------------------------------

    def refuse_next(self, path: str | None, count: int) -> None:
        """The next count new connections on path (None = any path) get 606."""
        self._refuse[path] += count

    def set_fault(self, conn_id: int, name: str) -> None:
        """Mark a persistent fault (stall, blackhole, burst) on a connection."""
        self.conns[conn_id].faults.add(name)

    def unset_fault(self, conn_id: int, name: str) -> None:
        """Remove a persistent fault, if set."""
        conn = self.conns.get(conn_id)
        if conn is not None:
            conn.faults.discard(name)

    def set_reply(self, conn_id: int, ret: int, msg: str) -> None:
        """Answer the next subscription request of the connection with ret/msg."""
        self.conns[conn_id].reply = (ret, msg)

    def clear_faults(self, conn_id: int, now: float) -> set[str]:
        """Remove stall, blackhole and reply; restart the heartbeat clock. Returns the removed faults."""
        conn = self.conns[conn_id]
        removed = conn.faults & {"stall", "blackhole", "burst"}
        if conn.reply is not None:
            removed.add("reply")
        conn.faults -= removed
        conn.reply = None
        conn.last_heartbeat = now
        return removed

    # Frames ---------------------------------------------------------------------------------------

    def receive(self, conn_id: int, raw: bytes | str, now: float) -> Outcome:
        """Handle one inbound frame of a connection at time now and say what to answer."""
        conn = self.conns[conn_id]
        if conn.faults & SILENT_FAULTS:
            return DISCARDED  # the false-alive socket reads and ignores everything
        try:
            obj = _decode_any(raw)
        except (msgspec.DecodeError, UnicodeError):
            return self._refuse_frame(conn, error_frame(400, MSG_HEADER_INVALID))
        if not isinstance(obj, dict):
            return self._refuse_frame(conn, error_frame(400, MSG_HEADER_INVALID))
        seq_id, trace, cmd_id = obj.get("seq_id"), obj.get("trace", ""), obj.get("cmd_id")
        trace_ok = isinstance(trace, str) and len(trace) <= TRACE_MAX_CHARS
        echo_seq = seq_id if _is_uint32(seq_id) else 0
        echo_trace = trace if trace_ok else ""
        if not (_is_uint32(cmd_id) and _is_uint32(seq_id) and trace_ok):
            return self._refuse_frame(
                conn, error_frame(400, MSG_HEADER_INVALID, seq_id=echo_seq, trace=echo_trace))

        def answer(ret: int, msg: str | None = None) -> dict[str, Any]:
            return error_frame(ret, msg, cmd_id=cmd_id + 1, seq_id=seq_id, trace=trace)

        data = obj.get("data")
        if cmd_id == CMD_HEARTBEAT:
            if not isinstance(data, dict):
                return self._refuse_frame(conn, answer(400, MSG_DATA_INVALID))
            conn.heartbeats += 1
            conn.last_heartbeat = now
            return Outcome(reply=answer(OK))
        if cmd_id not in SUBSCRIPTION_CMDS:
            return self._refuse_frame(conn, answer(400, MSG_HEADER_INVALID))
        return self._subscription(conn, cmd_id, data, now, answer)

    def _refuse_frame(self, conn: ConnState, frame: dict[str, Any]) -> Outcome:
        key = str(frame["ret"])
        conn.refused[key] += 1
        self.totals[key] += 1
        return Outcome(reply=frame)

    def _subscription(self, conn: ConnState, cmd_id: int, data: object, now: float,
                      answer: Callable[[int, str | None], dict[str, Any]]) -> Outcome:
        def refuse(ret: int, msg: str | None = None) -> Outcome:
            conn.requests.append((now, cmd_id, ret))
            return self._refuse_frame(conn, answer(ret, msg))

        if conn.reply is not None:  # the "reply" fault
            ret, msg = conn.reply
            conn.reply = None
            return refuse(ret, msg)
        if self._rate_limited(conn, now):
            return refuse(429)
        try:
            if cmd_id == CMD_CANCEL:
                new_trades, new_books = self._cancel(conn, data)
            elif cmd_id == CMD_SUBSCRIBE_TRADES:
                new_trades, new_books = self._replace_trades(conn, data), ()
            else:
                new_trades, new_books = (), self._replace_books(conn, data)
        except _BadData:
            return refuse(400, MSG_DATA_INVALID)
        except KeyError:  # an unknown code: the whole request is rejected, nothing changed
            return refuse(600)
        conn.requests.append((now, cmd_id, OK))
        conn.last_accepted = now
        accepted = self._last_accepted.setdefault(conn.path, {})
        accepted[conn.id] = now
        for cid in [cid for cid, t in accepted.items() if now - t > self.token_gap_s and cid != conn.id]:
            del accepted[cid]
        return Outcome(reply=answer(OK, None), new_trades=tuple(new_trades), new_books=tuple(new_books))

    def _rate_limited(self, conn: ConnState, now: float) -> bool:
        # PROTOCOL.md "Limits": one subscription request per second per connection, and 3 s between
        # requests across connections of one token. Only accepted requests start the clocks.
        if self.conn_gap_s > 0 and conn.last_accepted is not None and now - conn.last_accepted < self.conn_gap_s:
            return True
        if self.token_gap_s > 0:
            others = [t for cid, t in self._last_accepted.get(conn.path, {}).items() if cid != conn.id]
            if others and now - max(others) < self.token_gap_s:
                return True
        return False

    def _symbol_list(self, conn: ConnState, data: object, *, book: bool) -> dict[str, int]:
        """Validate ``data.symbol_list``; return code -> requested depth (0 = none), deduplicated, cut.

        Raises:
            _BadData: data or an item is malformed, or the list is empty.
            KeyError: a code is unknown on this path (600).
        """
        if not isinstance(data, dict):
            raise _BadData
        items = data.get("symbol_list")
        if not isinstance(items, list) or not items:  # our reading: an empty list is a bad request
            raise _BadData
        wanted: dict[str, int] = {}
        for item in items:
            if not isinstance(item, dict):
                raise _BadData
            code = item.get("code")
            depth = item.get("depth_level", 0) if book else 0
            if not isinstance(code, str) or not code or type(depth) is not int or depth < 0:
                raise _BadData
            wanted.setdefault(code, depth)  # dedup keeps the first occurrence
        known = self.catalog[conn.path]
        unknown = [code for code in wanted if code not in known]
        if unknown:
            raise KeyError(unknown[0])  # PROTOCOL.md: 600, the whole request is rejected
        # PROTOCOL.md "Limits": codes beyond the per-connection limit are silently ignored.
        return dict(itertools.islice(wanted.items(), self.limits.max_codes))

    def _replace_trades(self, conn: ConnState, data: object) -> list[str]:
        # PROTOCOL.md: every 22004 REPLACES the connection's trade subscription.
        wanted = dict.fromkeys(self._symbol_list(conn, data, book=False))
        new = [code for code in wanted if code not in conn.trades]
        self._set_trades(conn, wanted)
        return new

    def _replace_books(self, conn: ConnState, data: object) -> list[str]:
        # PROTOCOL.md: 22002 REPLACES the connection's order-book subscription; without depth_level one
        # level, and never more than the class allows.
        wanted = {code: min(depth or 1, BOOK_DEPTH_MAX[asset_class(code)])
                  for code, depth in self._symbol_list(conn, data, book=True).items()}
        new = [code for code in wanted if code not in conn.books]
        self._set_books(conn, wanted)
        return new

    def _cancel(self, conn: ConnState, data: object) -> tuple[list[str], list[str]]:
        cancel_type = data.get("cancel_type") if isinstance(data, dict) else None
        if type(cancel_type) is not int or cancel_type not in (CANCEL_ALL, CANCEL_BOOK, CANCEL_TRADES):
            raise _BadData
        if cancel_type in (CANCEL_ALL, CANCEL_TRADES):
            self._set_trades(conn, {})
        if cancel_type in (CANCEL_ALL, CANCEL_BOOK):
            self._set_books(conn, {})
        return [], []

    def _set_trades(self, conn: ConnState, wanted: dict[str, None]) -> None:
        for code in conn.trades.keys() - wanted.keys():
            subs = self.trade_subscribers[code]
            del subs[conn.id]
            if not subs:
                del self.trade_subscribers[code]
        for code in wanted:
            self.trade_subscribers.setdefault(code, {})[conn.id] = None
        conn.trades = wanted

    def _set_books(self, conn: ConnState, wanted: dict[str, int]) -> None:
        for code in conn.books.keys() - wanted.keys():
            subs = self.book_subscribers[code]
            del subs[conn.id]
            if not subs:
                del self.book_subscribers[code]
        for code, depth in wanted.items():
            self.book_subscribers.setdefault(code, {})[conn.id] = depth
        conn.books = wanted

    # Views ----------------------------------------------------------------------------------------

    def unsubscribed_code(self, conn_id: int) -> str:
        """A known code of the connection's path that it does not subscribe, else "GHOST1"."""
        conn = self.conns[conn_id]
        return next((c for c in self.catalog_order[conn.path] if c not in conn.trades), "GHOST1")

    def snapshot(self) -> dict[str, Any]:
        """The state() dict: connections, the last closed ones, totals."""
        return {
            "connections": [c.snapshot() for c in self.conns.values()],
            "closed": [c.snapshot() for c in self.closed],
            "totals": dict(self.totals),
        }


def max_requests_in_window(conn_state: Mapping[str, Any], window_s: float = 1.0) -> int:
    """The largest number of subscription requests (refused ones included) within any window_s seconds.

    Args:
        conn_state: one entry of ``state()["connections"]`` or ``state()["closed"]``.
        window_s: the window length; requests exactly window_s apart are in different windows.
    """
    times = sorted(r[0] for r in conn_state["requests"])
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window_s:
            start += 1
        best = max(best, end - start + 1)
    return best


# --- Logging without the token ---------------------------------------------------------------------------


class _RedactToken(logging.Filter):
    """Replace the token with "***" in a record's message and traceback."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self._secrets = tuple({token, urllib.parse.quote(token, safe="")} - {""})

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


class Link:
    """One live WebSocket connection: its socket, its ConnState id and its tasks."""

    def __init__(self, ws: ServerConnection, conn: ConnState) -> None:
        self.ws = ws
        self.conn = conn
        self.watchdog: asyncio.Task[None] | None = None
        self.burst: asyncio.Task[None] | None = None

    @property
    def id(self) -> int:
        """The connection id (as in state())."""
        return self.conn.id

    def writable(self) -> bool:
        """Open, and not stalled or blackholed: frames may be written."""
        return (self.conn.open and not (self.conn.faults & SILENT_FAULTS)
                and self.ws.protocol.state is State.OPEN and not self.ws.transport.is_closing())

    def pushable(self) -> bool:
        """Writable, not in a burst and not hopelessly behind: the normal tick loops may push.

        A client that lets SLOW_CONSUMER_BYTES pile up in the server's send buffer misses ticks (it
        sees seq gaps) instead of growing the server's memory without bound.
        """
        return (self.writable() and "burst" not in self.conn.faults
                and self.ws.transport.get_write_buffer_size() < SLOW_CONSUMER_BYTES)

    def write(self, frames: list[bytes]) -> bool:
        """Write whole pre-built frames in order; False if the connection cannot take them."""
        if not self.writable():
            return False
        self.ws.transport.writelines(frames)
        return True


_T = TypeVar("_T")


class Simulator:
    """The AllTick simulator on an asyncio event loop. See the module docstring for the behaviour.

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
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, token: str = "test-token",  # noqa: S107
                 heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT_S, plan: str = "pro", *,
                 max_connections: int | None = None, max_codes: int | None = None,
                 tick_rate: float = DEFAULT_TICK_RATE, book_rate: float = DEFAULT_BOOK_RATE,
                 codes: int = DEFAULT_EXTRA_CODES, seed: int = 0, conn_gap_s: float = DEFAULT_CONN_GAP_S,
                 token_gap_s: float = DEFAULT_TOKEN_GAP_S) -> None:
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
        self.book_rate = book_rate
        self._token = token
        catalog = {path: [*BASE_PRICES[path], *generated_codes(path, codes)] for path in ENDPOINT_PATHS.values()}
        self.sim = SimState(catalog=catalog, limits=self.limits, conn_gap_s=conn_gap_s,
                            token_gap_s=token_gap_s, heartbeat_timeout=heartbeat_timeout)
        self.market = Market(catalog, seed=seed)
        self.links: dict[int, Link] = {}
        self._server: Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._ws_logger = logging.getLogger("tickvisor.simulator.ws")
        self._redact = _RedactToken(token)  # websockets logs request paths at DEBUG, token included

    def __repr__(self) -> str:
        return (f"Simulator(host={self.host!r}, port={self.port}, plan={self.plan!r}, token='***', "
                f"connections={len(self.links)})")

    # Lifecycle ------------------------------------------------------------------------------------

    async def start(self) -> int:
        """Bind and serve; return the bound port."""
        self._ws_logger.addFilter(self._redact)
        self._server = await serve(
            self._handle, self.host, self.port,
            process_request=self._process_request,
            compression=None,  # pushes are pre-built raw frames
            ping_interval=None,  # PROTOCOL.md: the server sends no heartbeats of its own
            close_timeout=CLOSE_TIMEOUT_S,
            open_timeout=OPEN_TIMEOUT_S,
            write_limit=WRITE_LIMIT_BYTES,
            logger=self._ws_logger,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        if self.tick_rate > 0:
            self._tasks.append(asyncio.create_task(self._tick_loop(self.tick_rate, self._push_trades)))
        if self.book_rate > 0:
            self._tasks.append(asyncio.create_task(self._tick_loop(self.book_rate, self._push_books)))
        log.info("simulator listening on %s:%d (plan %s, %s, token ***)", self.host, self.port, self.plan,
                 self.limits)
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

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def url(self, endpoint: str) -> str:
        """The ws:// URL, token included, of endpoint "stock" or "forex_crypto" (or a path)."""
        path = self._path(endpoint)
        if path is None:
            raise ValueError(f"unknown endpoint {endpoint!r}, expected one of {sorted(ENDPOINT_PATHS)}")
        return f"ws://{self.host}:{self.port}{path}?token={urllib.parse.quote(self._token, safe='')}"

    def admin_url(self, action: str = "state", **params: object) -> str:
        """The http:// URL of ``/admin/<action>`` with the token and params, e.g. admin_url("fault", name="drop")."""
        query = urllib.parse.urlencode({**{k: v for k, v in params.items() if v is not None}, "token": self._token})
        return f"http://{self.host}:{self.port}/admin/{action}?{query}"

    def state(self) -> dict[str, Any]:
        """A JSON-able snapshot: see the module docstring. Call it on the simulator's loop."""
        return self.sim.snapshot()

    @staticmethod
    def _path(endpoint: str | None) -> str | None:
        if endpoint is None:
            return None
        if endpoint in ENDPOINT_PATHS:
            return ENDPOINT_PATHS[endpoint]
        return endpoint if endpoint in ENDPOINT_PATHS.values() else None

    # HTTP: admin API and unknown paths -------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        split = urllib.parse.urlsplit(request.path)
        if split.path.startswith("/admin/"):
            return self._admin(connection, split.path, urllib.parse.parse_qs(split.query))
        if split.path not in ENDPOINT_PATHS.values():
            return connection.respond(http.HTTPStatus.NOT_FOUND, "Not Found\n")
        return None

    def _admin(self, connection: ServerConnection, path: str, query: dict[str, list[str]]) -> Response:
        def reply(status: http.HTTPStatus, body: object) -> Response:
            response = connection.respond(status, _encode(body).decode())
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

    # WebSocket connections ------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None  # noqa: S101 - websockets calls the handler after the handshake
        split = urllib.parse.urlsplit(ws.request.path)
        path = split.path
        token = urllib.parse.parse_qs(split.query).get("token", [""])[-1]
        host, port, *_ = ws.remote_address
        peer = f"{host}:{port}"
        if not hmac.compare_digest(token.encode(), self._token.encode()):
            # PROTOCOL.md "Error codes": 401 token invalid.
            self.sim.bad_token()
            log.info("connection from %s on %s refused: 401 token invalid (token ***)", peer, path)
            await self._refuse(ws, 401)
            return
        conn = self.sim.admit(path, peer, time.monotonic())
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

    async def _refuse(self, ws: ServerConnection, ret: int) -> None:
        with contextlib.suppress(ConnectionClosed):
            await ws.send(_encode(error_frame(ret)), text=True)
            await ws.close(CLOSE_POLICY, ERROR_MESSAGES[ret])

    def _receive(self, link: Link, message: bytes | str) -> None:
        try:
            outcome = self.sim.receive(link.id, message, time.monotonic())
        except Exception:  # the one catch-all, at the frame boundary: a server bug must not kill the socket
            log.exception("connection %d: failed to handle a frame", link.id)
            outcome = Outcome(reply=error_frame(400, MSG_HEADER_INVALID))
        if outcome.reply is None:
            return
        log.debug("connection %d: %s -> %s", link.id, outcome.reply["cmd_id"], outcome.reply["ret"])
        frames = [ws_text_frame(_encode(outcome.reply))]
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
                frames.append(book_frame(msgspec.structs.replace(book, sent_ns=now_ns), link.conn.books[code]))
                snapshots += 1
        if link.write(frames):
            self.sim.count_pushes(link.id, snapshots)

    async def _watchdog(self, link: Link) -> None:
        while True:
            remaining = self.sim.heartbeat_remaining(link.id, time.monotonic())
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
        for code, conn_ids in self.sim.trade_subscribers.items():
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
        for code, depths in self.sim.book_subscribers.items():
            targets = [(link, depth) for cid, depth in depths.items()
                       if (link := links.get(cid)) is not None and link.pushable()]
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

    def inject(self, fault: str, *, path: str | None = None, conn: int | None = None,
               **params: object) -> list[int]:
        """Inject a fault into live connections; call it on the simulator's loop.

        Args:
            fault: one of FAULTS (see the module docstring).
            path: an endpoint path or name; None = every path.
            conn: a connection id; None = every current connection on the path.
            params: the fault's parameters (count, code, kind, rate, ret, msg); strings are converted.

        Returns:
            The ids of the affected connections ([] for refuse).

        Raises:
            ValueError: unknown fault, path or parameter.
        """
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}, expected one of {list(FAULTS)}")
        target = self._path(path)
        if path is not None and target is None:
            raise ValueError(f"unknown path {path!r}")
        allowed = {"ghost": {"count", "code"}, "malformed": {"kind"}, "burst": {"count", "rate"},
                   "refuse": {"count"}, "reply": {"ret", "msg"}}.get(fault, set())
        if params.keys() - allowed:
            raise ValueError(f"fault {fault} takes no parameter {sorted(params.keys() - allowed)}")
        if fault == "refuse":
            self.sim.refuse_next(target, _as_int(params.get("count", 1)))
            log.info("fault refuse: next %s new connection(s) on %s", params.get("count", 1), target or "any path")
            return []
        links = [link for link in self.links.values()
                 if (target is None or link.conn.path == target) and (conn is None or link.id == conn)]
        action = getattr(self, f"_fault_{fault}")
        affected = [link.id for link in links if action(link, **params)]
        log.info("fault %s on connection(s) %s", fault, affected)
        return affected

    def _fault_stall(self, link: Link) -> bool:
        self.sim.set_fault(link.id, "stall")
        return True

    def _fault_blackhole(self, link: Link) -> bool:
        self.sim.set_fault(link.id, "blackhole")
        link.ws.transport.pause_reading()
        return True

    def _fault_drop(self, link: Link) -> bool:
        link.ws.transport.abort()
        return True

    def _fault_clear(self, link: Link) -> bool:
        removed = self.sim.clear_faults(link.id, time.monotonic())
        if "blackhole" in removed:
            link.ws.transport.resume_reading()
        if link.burst is not None:
            link.burst.cancel()
        return bool(removed)

    def _fault_reply(self, link: Link, ret: object = 603, msg: object = None) -> bool:
        code = _as_int(ret)
        self.sim.set_reply(link.id, code, ERROR_MESSAGES.get(code, "error") if msg is None else str(msg))
        return True

    def _fault_ghost(self, link: Link, count: object = 5, code: object = None) -> bool:
        if not link.writable():
            return False
        ghost = self.sim.unsubscribed_code(link.id) if code is None else str(code)
        if ghost in link.conn.trades:
            raise ValueError(f"ghost code {ghost} is subscribed on connection {link.id}")
        frames = [trade_frame(self.market.next_trade(ghost, time.time_ns())) for _ in range(_as_int(count))]
        link.write(frames)
        self.sim.count_pushes(link.id, len(frames))
        return True

    def _fault_malformed(self, link: Link, kind: object = "json") -> bool:
        if kind not in MALFORMED_KINDS:
            raise ValueError(f"unknown malformed kind {kind!r}, expected one of {list(MALFORMED_KINDS)}")
        if not link.writable():
            return False
        code = next(iter(link.conn.trades), self.sim.unsubscribed_code(link.id))
        trade = msgspec.to_builtins(self.market.next_trade(code, time.time_ns()))
        if kind == "json":
            payload = _encode({"cmd_id": CMD_TRADE_PUSH, "data": trade})[:-7] + b',"pri'  # cut mid-key
        elif kind == "fields":
            del trade["price"]
            payload = _encode({"cmd_id": CMD_TRADE_PUSH, "data": trade})
        else:
            trade["price"] = float(trade["price"])
            payload = _encode({"cmd_id": CMD_TRADE_PUSH, "data": trade})
        link.write([ws_text_frame(payload)])
        self.sim.count_pushes(link.id, 1)
        return True

    def _fault_burst(self, link: Link, count: object = 100_000, rate: object = None) -> bool:
        codes = list(link.conn.trades)
        if not codes or not link.writable():
            return False
        if link.burst is not None:
            link.burst.cancel()
        self.sim.set_fault(link.id, "burst")
        link.burst = asyncio.create_task(
            self._burst(link, codes, _as_int(count), None if rate is None else _as_float(rate)))
        return True

    async def _burst(self, link: Link, codes: list[str], count: int, rate: float | None) -> None:
        """Write count trades round-robin over codes, in chunks with flow control.

        Unpaced, every frame is encoded before the first byte is written (in slices that yield to the
        event loop), then written as large joined blobs: the write phase costs the server almost no
        CPU, so on a small machine it outpaces any client and does not measure itself. Its ``sent_ns``
        is then the encoding time; use a paced burst (``rate``) for latency.
        """
        try:
            if rate is None:
                await self._burst_pre_encoded(link, codes, count)
            else:
                await self._burst_paced(link, codes, count, rate)
        finally:
            if link.burst is asyncio.current_task():  # not superseded by a newer burst
                link.burst = None
                self.sim.unset_fault(link.id, "burst")

    async def _burst_pre_encoded(self, link: Link, codes: list[str], count: int) -> None:
        next_code = itertools.cycle(codes).__next__
        next_trade = self.market.next_trade
        blobs: list[tuple[bytes, int]] = []
        frames: list[bytes] = []
        for start in range(0, count, BURST_ENCODE_SLICE_FRAMES):
            now_ns = time.time_ns()
            # Seq numbers are taken now, in order: they stay increasing per code on the wire.
            frames.extend(
                trade_frame(next_trade(next_code(), now_ns))
                for _ in range(min(BURST_ENCODE_SLICE_FRAMES, count - start))
            )
            while len(frames) >= BURST_BLOB_FRAMES:
                blobs.append((b"".join(frames[:BURST_BLOB_FRAMES]), BURST_BLOB_FRAMES))
                del frames[:BURST_BLOB_FRAMES]
            await asyncio.sleep(0)
        if frames:
            blobs.append((b"".join(frames), len(frames)))
        for blob, n in blobs:
            if not link.write([blob]):
                return
            self.sim.count_pushes(link.id, n)
            await link.ws.drain()  # waits while the transport is above its high-water mark

    async def _burst_paced(self, link: Link, codes: list[str], count: int, rate: float) -> None:
        next_code = itertools.cycle(codes).__next__
        next_trade = self.market.next_trade
        loop = asyncio.get_running_loop()
        started = loop.time()
        sent = 0
        while sent < count:
            if not link.writable():
                return
            due = min(count, int((loop.time() - started) * rate) + 1)
            n = min(BURST_CHUNK_FRAMES, due - sent)
            if n > 0:
                now_ns = time.time_ns()
                # Allocated and written in one synchronous step: seq stays increasing per code.
                link.write([trade_frame(next_trade(next_code(), now_ns)) for _ in range(n)])
                self.sim.count_pushes(link.id, n)
                sent += n
            await link.ws.drain()
            await asyncio.sleep(BURST_SLICE_S)


def _as_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str | float):
        raise ValueError(f"expected an integer, got {value!r}")
    return int(value)


def _as_float(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | str | float):
        raise ValueError(f"expected a number, got {value!r}")
    return float(value)


# --- A simulator on its own thread --------------------------------------------------------------------------


class SimulatorThread:
    """A Simulator running on its own event loop in a daemon thread, for synchronous callers.

    ``start()`` returns the port; ``url()``, ``admin_url()``, ``inject()`` and ``state()`` are
    thread-safe. Use it as a context manager: ``with SimulatorThread(tick_rate=5) as sim: ...``.

    Args:
        kwargs: the Simulator's arguments.
    """

    def __init__(self, **kwargs: Any) -> None:
        self.simulator = Simulator(**kwargs)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"SimulatorThread({self.simulator!r})"

    @property
    def port(self) -> int:
        """The bound port (after start())."""
        return self.simulator.port

    def start(self, timeout: float = 10.0) -> int:
        """Start the loop thread and the server; return the bound port."""
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="tickvisor-simulator", daemon=True)
        self._thread.start()
        return asyncio.run_coroutine_threadsafe(self.simulator.start(), loop).result(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server and the loop thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self.simulator.stop(), loop).result(timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout)
            loop.close()
            self._loop = self._thread = None

    def _call(self, fn: Callable[[], _T], timeout: float = 10.0) -> _T:
        if self._loop is None:
            raise RuntimeError("simulator thread is not started")

        async def call() -> _T:
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), self._loop).result(timeout)

    def url(self, endpoint: str) -> str:
        """See Simulator.url."""
        return self.simulator.url(endpoint)

    def admin_url(self, action: str = "state", **params: object) -> str:
        """See Simulator.admin_url."""
        return self.simulator.admin_url(action, **params)

    def inject(self, fault: str, *, path: str | None = None, conn: int | None = None,
               **params: object) -> list[int]:
        """See Simulator.inject; runs on the simulator's loop."""
        return self._call(lambda: self.simulator.inject(fault, path=path, conn=conn, **params))

    def state(self) -> dict[str, Any]:
        """See Simulator.state; runs on the simulator's loop."""
        return self._call(self.simulator.state)

    def __enter__(self) -> SimulatorThread:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- Command line -------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="A local AllTick WebSocket server with fault injection.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    tok = p.add_mutually_exclusive_group(required=True)
    tok.add_argument("--token", help="the only valid token (never printed)")
    tok.add_argument("--token-env", metavar="NAME",
                     help="read the token from this environment variable instead (keeps it out of `ps`)")
    p.add_argument("--heartbeat-timeout", type=float, default=DEFAULT_HEARTBEAT_TIMEOUT_S)
    p.add_argument("--plan", choices=sorted(PLAN_LIMITS), default="pro")
    p.add_argument("--max-connections", type=int, default=None)
    p.add_argument("--max-codes", type=int, default=None)
    p.add_argument("--tick-rate", type=float, default=DEFAULT_TICK_RATE)
    p.add_argument("--book-rate", type=float, default=DEFAULT_BOOK_RATE)
    p.add_argument("--codes", type=int, default=DEFAULT_EXTRA_CODES)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--conn-gap-s", type=float, default=DEFAULT_CONN_GAP_S)
    p.add_argument("--token-gap-s", type=float, default=DEFAULT_TOKEN_GAP_S)
    p.add_argument("--log-level", default="INFO")
    return p


async def _serve(args: argparse.Namespace) -> None:
    sim = Simulator(host=args.host, port=args.port, token=args.token, heartbeat_timeout=args.heartbeat_timeout,
                    plan=args.plan, max_connections=args.max_connections, max_codes=args.max_codes,
                    tick_rate=args.tick_rate, book_rate=args.book_rate, codes=args.codes, seed=args.seed,
                    conn_gap_s=args.conn_gap_s, token_gap_s=args.token_gap_s)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    port = await sim.start()
    sys.stdout.write(f"SIMULATOR LISTENING {args.host}:{port}\n")
    sys.stdout.flush()
    try:
        await stop.wait()
    finally:
        await sim.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulator until SIGINT/SIGTERM; return the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.token_env is not None:
        args.token = os.environ.get(args.token_env, "")
        if not args.token:
            parser.error(f"--token-env {args.token_env}: that environment variable is not set or empty")
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
