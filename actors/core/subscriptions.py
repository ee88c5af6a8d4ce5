"""Subscription state of one connection: desired vs acknowledged codes. Pure: no I/O, no clock.

Rules of this module:

1. PROTOCOL.md: every 22004 (22002) REPLACES the connection's whole trade (order-book) set. So the book
   never sends an increment: it sends the whole desired set, or a 22006 cancel when that set is empty.
2. The acknowledged set changes only on a 200 answer to the request in flight, never on send.
   A response whose seq_id is not the one in flight is ignored (it belongs to an older socket or request),
   and so is one whose cmd_id acknowledges another command (a heartbeat's seq_id may collide).
3. One request in flight at a time; none closer than ``conn_gap_s`` to the previous one on this
   connection (PROTOCOL.md: one subscription request per second), and none before the shared
   ``RateGate`` allows it (3 s between requests across connections of one token).
4. On 600 (code invalid) or 604 (code unauthorized) the previous set stays in force (PROTOCOL.md, our
   reading). The codes that request added are the suspects; the book bisects them with probe requests
   that keep every acknowledged code, until each bad code is isolated and quarantined. No guessing: a
   code is quarantined only when a request adding it alone to a good set was refused, or when every
   other suspect was proven good.
5. 429 waits ``retry_after_s`` and retries. Any other refusal waits ``refused_backoff_s``.
6. A new socket starts with nothing subscribed: ``connection_up`` forgets the acknowledged set, and the
   whole desired set is sent again (resubscribe after reconnect).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Final

import msgspec

from actors.core import plans, wire
from actors.core.errors import VendorError

REQUEST_TIMEOUT_S: Final = 5.0  # no answer within this: the request is presumed lost and sent again
RATE_MARGIN_S: Final = 0.25  # added to the protocol gaps: between our decision and the
# server a request passes a Ray call and a busy event loop; 0.05 s proved too little under load
_KNOWN_ACKS: Final = frozenset(wire.ACK_OF.values())


class Kind(enum.StrEnum):
    """Which subscription a book holds: trades (22004) or order book (22002)."""

    TRADES = "trades"
    BOOK = "book"

    @property
    def cancel_type(self) -> int:
        """The 22006 cancel_type that drops this kind."""
        return wire.CANCEL_TRADES if self is Kind.TRADES else wire.CANCEL_BOOK

    @property
    def ack_cmd(self) -> int:
        """The cmd_id of the answer to this kind's subscribe request."""
        return wire.CMD_SUBSCRIBE_TRADES_ACK if self is Kind.TRADES else wire.CMD_SUBSCRIBE_BOOK_ACK


class Purpose(enum.IntEnum):
    """What an in-flight subscription request is for."""

    SET = 1  # the whole desired set
    PROBE = 2  # acknowledged codes plus half of the suspects
    CANCEL = 3  # 22006: the desired set is empty


class InFlight(msgspec.Struct, frozen=True):
    """The request sent and not yet answered: its seq_id, codes, purpose and send time."""

    seq_id: int
    codes: frozenset[str]
    purpose: Purpose
    sent_at: float


class Quarantined(msgspec.Struct, frozen=True):
    """An event: the vendor refused ``code`` (``ret`` 600 or 604)."""

    code: str
    ret: int
    msg: str

    def error(self) -> VendorError:
        """The refusal as the exception reported to the code's holders."""
        return VendorError(self.ret, self.msg)


class Refused(msgspec.Struct, frozen=True):
    """An event: a request was refused for a reason other than a bad code (401, 429, 603, 606...)."""

    ret: int
    msg: str
    codes: frozenset[str]

    def error(self) -> VendorError:
        """The refusal as the exception reported and shown in the status."""
        return VendorError(self.ret, self.msg)


class Acknowledged(msgspec.Struct, frozen=True):
    """An event: the server confirmed ``codes`` as the connection's whole set."""

    codes: frozenset[str]
    requested_at: float
    acknowledged_at: float


Event = Quarantined | Refused | Acknowledged


class BookStats(msgspec.Struct, frozen=True):
    """Counters of one connection's subscription state, for the status view."""

    desired: int
    acknowledged: int
    in_flight: bool
    requests_sent: int
    refusals: int
    quarantined: int
    in_sync: bool


class RateGate:
    """Shared spacing of subscription requests across the connections of one token and endpoint.

    PROTOCOL.md "Limits": at most one subscription request per second per connection; across
    connections of one token, keep 3 s between subscription requests.
    """

    def __init__(
        self,
        *,
        conn_gap_s: float = plans.SUBSCRIBE_GAP_PER_CONNECTION_S + RATE_MARGIN_S,
        token_gap_s: float = plans.SUBSCRIBE_GAP_PER_TOKEN_S + RATE_MARGIN_S,
    ) -> None:
        self.conn_gap_s = conn_gap_s
        self.token_gap_s = token_gap_s
        self._last: dict[str, float] = {}

    def ready_at(self, conn: str) -> float:
        """The earliest time a request may go out on ``conn`` (0.0 when nothing was sent yet)."""
        ready = 0.0
        for other, at in self._last.items():
            gap = self.conn_gap_s if other == conn else self.token_gap_s
            ready = max(ready, at + gap)
        return ready

    def record(self, conn: str, now: float) -> None:
        """A subscription request went out on ``conn`` at ``now``."""
        self._last[conn] = now

    def new_socket(self, conn: str) -> None:
        """``conn`` opened a new socket: to the server that is another connection of the token, so the
        token gap, not the connection gap, now separates it from the old socket's last request.
        """
        last = self._last.pop(conn, None)
        if last is not None:
            previous = f"{conn}#previous-socket"
            self._last[previous] = max(last, self._last.get(previous, last))

    def forget(self, conn: str) -> None:
        """``conn`` no longer exists."""
        self._last.pop(conn, None)


class SubscriptionBook:
    """Desired vs acknowledged codes of one kind on one connection."""

    def __init__(
        self,
        conn: str,
        kind: Kind = Kind.TRADES,
        *,
        gate: RateGate | None = None,
        retry_after_s: float = 2.0,
        refused_backoff_s: float = 10.0,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
        depth_level: int | None = None,
    ) -> None:
        self.conn = conn
        self.kind = kind
        self._gate = gate if gate is not None else RateGate()
        self._retry_after_s = retry_after_s
        self._refused_backoff_s = refused_backoff_s
        self._request_timeout_s = request_timeout_s
        self._depth_level = depth_level
        self.desired: frozenset[str] = frozenset()
        self.acknowledged: frozenset[str] = frozenset()
        self.quarantined: dict[str, Quarantined] = {}
        self._suspects: frozenset[str] = frozenset()
        self._bad_ret = 600
        self._bad_msg = "code invalid"
        self._in_flight: InFlight | None = None
        self._not_before = 0.0
        self._connected = False
        self._requests_sent = 0
        self._refusals = 0
        self._events: list[Event] = []

    # --- inputs -----------------------------------------------------------------------------------

    def want(self, codes: Iterable[str]) -> None:
        """Make ``codes`` the whole desired set. Quarantined codes that are no longer wanted are forgotten."""
        self.desired = frozenset(codes)
        for code in [c for c in self.quarantined if c not in self.desired]:
            del self.quarantined[code]

    def connection_up(self) -> None:
        """A new socket is open: it holds no subscription yet, so everything desired is sent again."""
        self._connected = True
        self._gate.new_socket(self.conn)
        self.acknowledged = frozenset()
        self._in_flight = None
        self._suspects = frozenset()

    def connection_down(self) -> None:
        """The socket is gone: nothing can be sent until ``connection_up``."""
        self._connected = False
        self.acknowledged = frozenset()
        self._in_flight = None
        self._suspects = frozenset()

    def resend(self) -> None:
        """Send the whole set again although it was acknowledged (a code that never got a tick may have
        been lost on the server's side). Nothing happens while disconnected or with a request in flight.
        """
        if self._connected and self._in_flight is None:
            self.acknowledged = frozenset()

    @property
    def target(self) -> frozenset[str]:
        """What the connection should hold: desired minus quarantined."""
        return self.desired - self.quarantined.keys()

    @property
    def in_sync(self) -> bool:
        """True when the server holds exactly the target set and nothing is in flight."""
        return self._in_flight is None and self.acknowledged == self.target

    def next_wakeup(self, now: float) -> float | None:
        """When ``request_to_send`` may next return something; None when nothing is pending."""
        if not self._connected:
            return None
        if self._in_flight is not None:
            # Presumed lost then; the resend also waits for the gate (another connection may have sent).
            lost_at = self._in_flight.sent_at + self._request_timeout_s
            return max(lost_at, self._not_before, self._gate.ready_at(self.conn))
        if self.acknowledged == self.target:
            # Suspects are never acknowledged codes, so with acknowledged == target they are all
            # unwanted: request_to_send drops them and sends nothing.
            return None
        return max(now, self._not_before, self._gate.ready_at(self.conn))

    def request_to_send(self, now: float, ids: wire.RequestIds) -> wire.AnyRequest | None:
        """The request to send now, or None (in sync, disconnected, in flight, or rate-limited).

        The returned request is recorded as in flight: send it, or call ``connection_down``.
        """
        if not self._connected:
            return None
        if self._in_flight is not None:
            if now - self._in_flight.sent_at < self._request_timeout_s:
                return None
            self._in_flight = None  # lost: the answer never came; send again
        if now < self._not_before or now < self._gate.ready_at(self.conn):
            return None
        target = self.target
        if not self._suspects <= target:
            # The proof "a bad code is among the suspects" holds only for the whole suspect set. Once a
            # suspect is no longer wanted (perhaps the bad one), the rest may all be good: bisecting on
            # would quarantine a good code. The whole set decides again.
            self._suspects = frozenset()
        codes, purpose = self._next_set(target)
        if codes is None:
            return None
        request: wire.AnyRequest
        if purpose is Purpose.CANCEL:
            request = wire.cancel(self.kind.cancel_type, ids)
        elif self.kind is Kind.TRADES:
            request = wire.subscribe_trades(codes, ids)
        else:
            request = wire.subscribe_book(codes, ids, self._depth_level)
        self._in_flight = InFlight(request.seq_id, codes, purpose, now)
        self._gate.record(self.conn, now)
        self._requests_sent += 1
        return request

    def _next_set(self, target: frozenset[str]) -> tuple[frozenset[str] | None, Purpose]:
        if len(self._suspects) > 1:
            half = frozenset(sorted(self._suspects)[: len(self._suspects) // 2])
            return (self.acknowledged & target) | half, Purpose.PROBE
        if target == self.acknowledged:
            return None, Purpose.SET
        if not target:
            return frozenset(), Purpose.CANCEL
        return target, Purpose.SET

    def receive_response(self, response: wire.AnyResponse, now: float) -> bool:
        """Apply the answer to the request in flight. Returns False when it answers something else."""
        flight = self._in_flight
        if flight is None or response.seq_id != flight.seq_id:
            return False
        expected = wire.CMD_CANCEL_ACK if flight.purpose is Purpose.CANCEL else self.kind.ack_cmd
        if response.cmd_id in _KNOWN_ACKS and response.cmd_id != expected:
            # Same seq_id, other request: e.g. a heartbeat ack (the connection numbers its heartbeats
            # with its own RequestIds, so seq_ids collide) or the other kind's answer.
            return False
        self._in_flight = None
        if response.ret == 200:
            self._accept(flight, now)
        elif response.ret in (600, 604):
            self._bisect(flight, response)
        else:
            self._refusals += 1
            wait = self._retry_after_s if response.ret == 429 else self._refused_backoff_s
            self._not_before = now + wait
            self._events.append(Refused(response.ret, response.msg, flight.codes))
        return True

    def _accept(self, flight: InFlight, now: float) -> None:
        previous = self.acknowledged
        self.acknowledged = frozenset() if flight.purpose is Purpose.CANCEL else flight.codes
        if previous != self.acknowledged or flight.purpose is Purpose.SET:
            # Also for a probe: it is the connection's whole set now, and the last probe may be what
            # brings the book in sync (no SET follows then).
            self._events.append(Acknowledged(self.acknowledged, flight.sent_at, now))
        if flight.purpose is Purpose.PROBE:
            # The probed half is good. The full set failed before, so the bad codes are in the rest.
            self._suspects -= flight.codes
            self._isolate_single()

    def _bisect(self, flight: InFlight, response: wire.AnyResponse) -> None:
        self._refusals += 1
        # PROTOCOL.md, our reading: on 600 the whole request is rejected and the previous set stays.
        added = flight.codes - self.acknowledged
        if not added:
            self._not_before = self._gate.ready_at(self.conn) + self._refused_backoff_s
            self._events.append(Refused(response.ret, response.msg, flight.codes))
            return
        self._suspects = added
        self._bad_ret = response.ret
        self._bad_msg = response.msg
        self._isolate_single()

    def _isolate_single(self) -> None:
        if len(self._suspects) == 1:
            (code,) = self._suspects
            self._suspects = frozenset()
            if code not in self.desired:
                return  # unsubscribed meanwhile: ``want`` forgets unwanted quarantines, so keep none
            event = Quarantined(code, self._bad_ret, self._bad_msg)
            self.quarantined[code] = event
            self._events.append(event)

    # --- outputs ----------------------------------------------------------------------------------

    def events(self) -> list[Event]:
        """Events since the last call (quarantines, refusals, acknowledgements), oldest first."""
        out, self._events = self._events, []
        return out

    def statistics(self) -> BookStats:
        """Counters of this book."""
        return BookStats(
            desired=len(self.desired),
            acknowledged=len(self.acknowledged),
            in_flight=self._in_flight is not None,
            requests_sent=self._requests_sent,
            refusals=self._refusals,
            quarantined=len(self.quarantined),
            in_sync=self.in_sync,
        )
