"""The AllTick frames: every request and response of PROTOCOL.md as a msgspec Struct. Pure: no I/O, no clock.

Rules of this module:

1. Every frame in ../shared/PROTOCOL.md has one Struct here. Requests carry ``cmd_id`` (the tag),
   ``seq_id``, ``trace`` (<= 64 chars) and ``data``; responses echo ``seq_id``/``trace`` and carry
   ``ret``/``msg``; pushes carry only ``cmd_id`` and ``data``.
2. A subscription request is always a whole set (PROTOCOL.md: every 22004 REPLACES the connection's
   trade subscription). Encoders take a set of codes, dedupe and sort it, and refuse an empty one.
3. Pushes are decoded as sent (``Trade``, ``Book``: vendor quirks and all); ``actors.core.normalise``
   turns them into our records. Dispatch is a ``match`` on the tagged Struct types, never on the number.
4. Decoding never raises anything but ``MalformedFrame`` for bad input.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Final

import msgspec

from actors.core.errors import MalformedFrame, SubscriptionRefused, VendorError

# --- commands (PROTOCOL.md "Commands") -------------------------------------------------------------

CMD_HEARTBEAT: Final = 22000
CMD_HEARTBEAT_ACK: Final = 22001
CMD_SUBSCRIBE_BOOK: Final = 22002
CMD_SUBSCRIBE_BOOK_ACK: Final = 22003
CMD_SUBSCRIBE_TRADES: Final = 22004
CMD_SUBSCRIBE_TRADES_ACK: Final = 22005
CMD_CANCEL: Final = 22006
CMD_CANCEL_ACK: Final = 22007
CMD_TRADE_PUSH: Final = 22998
CMD_BOOK_PUSH: Final = 22999
#: Requests that count against the subscription rate limit (PROTOCOL.md "Limits").
SUBSCRIPTION_CMDS: Final = frozenset({CMD_SUBSCRIBE_BOOK, CMD_SUBSCRIBE_TRADES, CMD_CANCEL})

CANCEL_ALL: Final = 0
CANCEL_BOOK: Final = 1
CANCEL_TRADES: Final = 2

TRACE_MAX_CHARS: Final = 64  # PROTOCOL.md "Frame envelope"
UINT32_MAX: Final = 2**32 - 1

# --- requests ------------------------------------------------------------------------------------


class Symbol(msgspec.Struct, frozen=True, omit_defaults=True):
    """One entry of ``symbol_list``; ``depth_level`` only for order books."""

    code: str
    depth_level: int | None = None


class SymbolList(msgspec.Struct, frozen=True):
    """``data`` of a subscription request (22002, 22004): the whole list of codes."""

    symbol_list: list[Symbol]


class CancelData(msgspec.Struct, frozen=True):
    """``data`` of a 22006 cancel request."""

    cancel_type: int


class Empty(msgspec.Struct, frozen=True):
    """``data`` of a heartbeat: ``{}``."""


class Request(msgspec.Struct, frozen=True, tag_field="cmd_id"):
    """Client to server. The tag is ``cmd_id``."""

    seq_id: int
    trace: str


class HeartbeatRequest(Request, tag=CMD_HEARTBEAT, frozen=True):
    """22000: a heartbeat; the server answers 22001."""

    data: Empty = Empty()


class SubscribeBook(Request, tag=CMD_SUBSCRIBE_BOOK, frozen=True):
    """22002: the connection's whole order-book subscription."""

    data: SymbolList


class SubscribeTrades(Request, tag=CMD_SUBSCRIBE_TRADES, frozen=True):
    """22004: the connection's whole trade subscription."""

    data: SymbolList


class Cancel(Request, tag=CMD_CANCEL, frozen=True):
    """22006: cancel the connection's subscriptions."""

    data: CancelData


AnyRequest = HeartbeatRequest | SubscribeBook | SubscribeTrades | Cancel


class RequestIds:
    """Hands out a unique ``seq_id`` and ``trace`` per request.

    ``prefix`` should say who sends (connection id and incarnation), so traces stay unique across
    reconnects and actor restarts. seq_id wraps within uint32.
    """

    def __init__(self, prefix: str, start: int = 1) -> None:
        room = TRACE_MAX_CHARS - 11  # room for "-" and a 10-digit uint32
        if len(prefix) > room:
            # Cutting the tail would drop what tells two senders apart (often the incarnation at the
            # end): keep the head and add a digest of the whole prefix.
            digest = hashlib.blake2b(prefix.encode("utf-8", "surrogatepass"), digest_size=4).hexdigest()
            prefix = f"{prefix[: room - len(digest) - 1]}~{digest}"
        self._prefix = prefix
        self._next = start % (UINT32_MAX + 1)

    def next(self) -> tuple[int, str]:
        """The next ``(seq_id, trace)``."""
        seq_id = self._next
        self._next = (self._next + 1) % (UINT32_MAX + 1)
        return seq_id, f"{self._prefix}-{seq_id}"


_encoder = msgspec.json.Encoder()


def encode(request: AnyRequest) -> bytes:
    """JSON bytes of one request."""
    return _encoder.encode(request)


def heartbeat(ids: RequestIds) -> HeartbeatRequest:
    """A 22000 heartbeat."""
    seq_id, trace = ids.next()
    return HeartbeatRequest(seq_id=seq_id, trace=trace)


def _symbol_list(codes: Iterable[str], depth_level: int | None = None) -> SymbolList:
    if isinstance(codes, str | bytes):
        # A bare string is an iterable of characters: "AAPL.US" would subscribe ".", "A", "L", ...
        raise TypeError(f"pass a collection of codes, not the single string {codes!r}")
    unique = sorted(set(codes))
    if not unique:
        # PROTOCOL.md, our reading: an empty symbol_list is a bad request; the client never sends one.
        raise SubscriptionRefused({})
    return SymbolList([Symbol(code, depth_level) for code in unique])


def subscribe_trades(codes: Iterable[str], ids: RequestIds) -> SubscribeTrades:
    """A 22004 carrying the WHOLE trade set (PROTOCOL.md: every 22004 REPLACES the set).

    Raises:
        SubscriptionRefused: the set is empty; use ``cancel(CANCEL_TRADES)`` to drop everything.

    """
    data = _symbol_list(codes)
    seq_id, trace = ids.next()
    return SubscribeTrades(seq_id=seq_id, trace=trace, data=data)


def subscribe_book(codes: Iterable[str], ids: RequestIds, depth_level: int | None = None) -> SubscribeBook:
    """A 22002 carrying the WHOLE order-book set.

    Raises:
        SubscriptionRefused: the set is empty; use ``cancel(CANCEL_BOOK)`` to drop everything.

    """
    data = _symbol_list(codes, depth_level)
    seq_id, trace = ids.next()
    return SubscribeBook(seq_id=seq_id, trace=trace, data=data)


def cancel(cancel_type: int, ids: RequestIds) -> Cancel:
    """A 22006: 0 cancels everything, 1 the order book, 2 the trades."""
    # True == 1 and 1.0 == 1, but they would go on the wire as `true` and `1.0`.
    if (
        isinstance(cancel_type, bool)
        or not isinstance(cancel_type, int)
        or cancel_type not in (CANCEL_ALL, CANCEL_BOOK, CANCEL_TRADES)
    ):
        raise ValueError(f"cancel_type must be 0, 1 or 2, not {cancel_type!r}")
    seq_id, trace = ids.next()
    return Cancel(seq_id=seq_id, trace=trace, data=CancelData(int(cancel_type)))


# --- inbound frames ------------------------------------------------------------------------------


class Trade(msgspec.Struct, frozen=True, gc=False):
    """22998 ``data`` as the vendor sends it."""

    code: str
    seq: int | str
    tick_time: int | str
    price: str
    volume: str = ""
    turnover: str = ""
    trade_direction: int = 0
    sent_ns: int = 0  # not the vendor's: the bundled simulator's send time, for latency benchmarks


class Level(msgspec.Struct, frozen=True, gc=False):
    """One price level of a book side, as the vendor sends it."""

    price: str
    volume: str = ""


class Book(msgspec.Struct, frozen=True, gc=False):
    """22999 ``data`` as the vendor sends it."""

    code: str
    seq: int | str
    tick_time: int | str
    bids: list[Level] = []
    asks: list[Level] = []


class _Answer:
    """What every response can say, listed or not: success, or the refusal as an exception."""

    __slots__ = ()
    ret: int
    msg: str
    cmd_id: int
    seq_id: int

    @property
    def ok(self) -> bool:
        """True for ret 200."""
        return self.ret == 200

    def error(self) -> VendorError:
        """The refusal as the exception a caller raises or reports (``ret`` other than 200)."""
        return VendorError(self.ret, self.msg, self.cmd_id or None, self.seq_id or None)


class Inbound(msgspec.Struct, frozen=True, tag_field="cmd_id"):
    """Server to client. The tag is ``cmd_id``; it lives on each Struct's config, and callers dispatch
    with ``match`` on the type (``case TradePush(data=t):``), never on the number.
    """

    @property
    def cmd_id(self) -> int:
        """The frame's cmd_id (its tag)."""
        tag = self.__struct_config__.tag
        assert isinstance(tag, int)
        return tag


class TradePush(Inbound, tag=CMD_TRADE_PUSH, gc=False, frozen=True):
    """22998: a trade of a subscribed code."""

    data: Trade


class BookPush(Inbound, tag=CMD_BOOK_PUSH, gc=False, frozen=True):
    """22999: an order-book snapshot of a subscribed code."""

    data: Book


class Response(Inbound, _Answer, frozen=True):  # type: ignore[override]  # _Answer only declares cmd_id; Inbound's property is the one
    """An answer to a request: ``ret`` 200 is success, anything else a refusal (``error()``)."""

    ret: int
    msg: str = ""
    seq_id: int = 0
    trace: str = ""


class HeartbeatAck(Response, tag=CMD_HEARTBEAT_ACK, frozen=True):
    """22001: the answer to a heartbeat."""


class SubscribeBookAck(Response, tag=CMD_SUBSCRIBE_BOOK_ACK, frozen=True):
    """22003: the answer to a 22002 book subscription."""


class SubscribeTradesAck(Response, tag=CMD_SUBSCRIBE_TRADES_ACK, frozen=True):
    """22005: the answer to a 22004 trade subscription."""


class CancelAck(Response, tag=CMD_CANCEL_ACK, frozen=True):
    """22007: the answer to a 22006 cancel."""


class ErrorFrame(Response, tag=0, frozen=True):
    """An error the server sends on its own (401 bad token, 606 too many) or for an unparsable request."""


class OtherResponse(msgspec.Struct, _Answer, frozen=True):
    """A response with a cmd_id PROTOCOL.md does not list; kept so its ``ret`` is not lost."""

    ret: int
    cmd_id: int = 0
    msg: str = ""
    seq_id: int = 0
    trace: str = ""


InboundFrame = (
    TradePush | BookPush | HeartbeatAck | SubscribeBookAck | SubscribeTradesAck | CancelAck | ErrorFrame
)
AnyResponse = HeartbeatAck | SubscribeBookAck | SubscribeTradesAck | CancelAck | ErrorFrame | OtherResponse

#: The request each acknowledgement answers.
ACK_OF: Final = {
    CMD_HEARTBEAT: CMD_HEARTBEAT_ACK,
    CMD_SUBSCRIBE_BOOK: CMD_SUBSCRIBE_BOOK_ACK,
    CMD_SUBSCRIBE_TRADES: CMD_SUBSCRIBE_TRADES_ACK,
    CMD_CANCEL: CMD_CANCEL_ACK,
}


_decode_inbound = msgspec.json.Decoder(InboundFrame).decode
_decode_other = msgspec.json.Decoder(OtherResponse).decode


def decode_frame(frame: bytes | str) -> InboundFrame | OtherResponse:
    """Decode one raw frame into its Struct (pushes as sent, not normalised).

    Raises:
        MalformedFrame: not JSON, not a frame PROTOCOL.md allows, or fields of the wrong type.

    """
    # RecursionError: deeply nested JSON (msgspec recurses even to skip an unknown field).
    # UnicodeError: a str frame with a lone surrogate cannot be encoded to UTF-8.
    # TypeError: not bytes or str at all.
    try:
        return _decode_inbound(frame)
    except msgspec.ValidationError as exc:
        # Not a push or a known ack: a response to a command we do not know still carries `ret`.
        try:
            return _decode_other(frame)
        except (msgspec.DecodeError, RecursionError):
            raise MalformedFrame(str(exc), frame) from None
    except (msgspec.DecodeError, TypeError, UnicodeError, RecursionError) as exc:
        raise MalformedFrame(str(exc), frame) from None


#: Refusals after which the server closes the socket (PROTOCOL.md "Error codes"): 401 token invalid,
#: 606 too many connections or requests.
SESSION_REFUSALS: Final = frozenset({401, 606})


def session_answer(frame: bytes | str) -> bool | VendorError | None:
    """What one of a new socket's first frames says about the session.

    Returns:
        True when the server answered a request with 200 (it accepted the token and the connection);
        the ``VendorError`` when it refused the session (``SESSION_REFUSALS``); None when the frame
        says neither (a push, another refusal, a malformed frame).

    """
    try:
        decoded = decode_frame(frame)
    except MalformedFrame:
        return None
    match decoded:
        case TradePush() | BookPush():
            return None
        case response if response.ok:
            return True
        case response if response.ret in SESSION_REFUSALS:
            return response.error()
        case _:
            return None
