"""SimState, the sans-I/O core of the simulator, and ``max_requests_in_window`` over its state() view.

SimState keeps the subscriptions, limits, rate clocks, faults' bookkeeping and counters of every
connection.
"""

# Rules of this module:
# 1. SimState is the sans-I/O core: frames and times go in, responses and decisions come out. It owns
#    subscriptions, limits, rate clocks, faults' bookkeeping and counters. No socket, no clock.

from __future__ import annotations

import collections
import dataclasses
import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeGuard

import msgspec

from actors.sim.frames import decode_any, error_frame
from actors.sim.market import BOOK_DEPTH_MAX, asset_class
from actors.sim.protocol import (
    CANCEL_ALL,
    CANCEL_BOOK,
    CANCEL_TRADES,
    CMD_CANCEL,
    CMD_HEARTBEAT,
    CMD_SUBSCRIBE_TRADES,
    MSG_DATA_INVALID,
    MSG_HEADER_INVALID,
    OK,
    SUBSCRIPTION_CMDS,
    TRACE_MAX_CHARS,
    UINT32_MAX,
    PlanLimits,
)

SILENT_FAULTS = frozenset({"stall", "blackhole"})  # nothing is sent, nothing closes
CLOSED_KEPT = 100  # closed connections kept in state()
HELD = 0  # the ``ret`` recorded in ``requests`` for a request the "hold" fault left unanswered


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
    token: int = 0  # which of the simulator's tokens opened it (0: the main one)

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
            "token": self.token,
        }


@dataclasses.dataclass(frozen=True, slots=True)
class Outcome:
    """What the shell must do after one inbound frame: send ``reply`` (if any), then the snapshots."""

    reply: dict[str, Any] | None = None
    new_trades: tuple[str, ...] = ()  # newly subscribed trade codes: push their last trade
    new_books: tuple[str, ...] = ()  # newly subscribed book codes: push their last book


DISCARDED = Outcome()


def _is_uint32(value: object) -> TypeGuard[int]:
    return type(value) is int and 0 <= value <= UINT32_MAX


class _BadData(Exception):
    """A request's ``data`` is malformed: 400 "request data param invalid"."""


def _gap_key(conn: ConnState) -> str:
    """The rate clock a connection shares: its path's, per token (PROTOCOL.md "Limits")."""
    return conn.path if conn.token == 0 else f"{conn.path}#{conn.token}"


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

    def __init__(
        self,
        *,
        catalog: Mapping[str, Sequence[str]],
        limits: PlanLimits,
        conn_gap_s: float,
        token_gap_s: float,
        heartbeat_timeout: float,
    ) -> None:
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
            {
                "connections_opened": 0,
                "refused_606": 0,
                "refused_401": 0,
                "pushes": 0,
                "429": 0,
                "400": 0,
                "600": 0,
            }
        )
        self._refuse: collections.Counter[str | None] = collections.Counter()  # path (None = any) -> n
        self._hold: collections.Counter[str | None] = collections.Counter()  # path (None = any) -> n
        self._last_accepted: dict[str, dict[int, float]] = {}  # path -> conn id -> time
        self._ids = itertools.count(1)

    # Connections ---------------------------------------------------------------------------------

    def admit(self, path: str, peer: str, now: float, token: int = 0) -> ConnState | None:
        """Register a new connection with valid token number ``token``, or None when it must get 606
        and be closed. The connection limit counts each token's connections apart.
        """
        # PROTOCOL.md "Limits": connections beyond the limit are closed at once.
        if self._refuse[path] > 0 or self._refuse[None] > 0:
            self._refuse[path if self._refuse[path] > 0 else None] -= 1
            self.totals["refused_606"] += 1
            return None
        if (
            sum(1 for c in self.conns.values() if c.path == path and c.token == token)
            >= self.limits.max_connections
        ):
            self.totals["refused_606"] += 1
            return None
        conn = ConnState(
            id=next(self._ids), path=path, peer=peer, opened_at=now, last_heartbeat=now, token=token
        )
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

    def hold_next(self, path: str | None, count: int) -> None:
        """The next count subscription requests on path (None = any path), on any connection, go
        unanswered.
        """
        self._hold[path] += count

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

    def receive(self, conn_id: int, raw: bytes | str, now: float) -> Outcome:  # noqa: PLR0911 - one return per request kind
        """Handle one inbound frame of a connection at time now and say what to answer."""
        conn = self.conns[conn_id]
        if conn.faults & SILENT_FAULTS:
            return DISCARDED  # the false-alive socket reads and ignores everything
        try:
            obj = decode_any(raw)
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
                conn, error_frame(400, MSG_HEADER_INVALID, seq_id=echo_seq, trace=echo_trace)
            )

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

    def _subscription(
        self,
        conn: ConnState,
        cmd_id: int,
        data: object,
        now: float,
        answer: Callable[[int, str | None], dict[str, Any]],
    ) -> Outcome:
        def refuse(ret: int, msg: str | None = None) -> Outcome:
            conn.requests.append((now, cmd_id, ret))
            return self._refuse_frame(conn, answer(ret, msg))

        if self._hold[conn.path] > 0 or self._hold[None] > 0:  # the "hold" fault: read, never answered
            self._hold[conn.path if self._hold[conn.path] > 0 else None] -= 1
            conn.requests.append((now, cmd_id, HELD))
            self.totals["held"] += 1
            return DISCARDED
        if conn.reply is not None:  # the "reply" fault
            ret, msg = conn.reply
            conn.reply = None
            return refuse(ret, msg)
        if self._rate_limited(conn, now):
            return refuse(429)
        new_trades: Sequence[str]
        new_books: Sequence[str]
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
        accepted = self._last_accepted.setdefault(_gap_key(conn), {})
        accepted[conn.id] = now
        for cid in [cid for cid, t in accepted.items() if now - t > self.token_gap_s and cid != conn.id]:
            del accepted[cid]
        return Outcome(reply=answer(OK, None), new_trades=tuple(new_trades), new_books=tuple(new_books))

    def _rate_limited(self, conn: ConnState, now: float) -> bool:
        # PROTOCOL.md "Limits": one subscription request per second per connection, and 3 s between
        # requests across connections of one token. Only accepted requests start the clocks.
        if (
            self.conn_gap_s > 0
            and conn.last_accepted is not None
            and now - conn.last_accepted < self.conn_gap_s
        ):
            return True
        if self.token_gap_s > 0:
            others = [t for cid, t in self._last_accepted.get(_gap_key(conn), {}).items() if cid != conn.id]
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
        wanted = {
            code: min(depth or 1, BOOK_DEPTH_MAX[asset_class(code)])
            for code, depth in self._symbol_list(conn, data, book=True).items()
        }
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
