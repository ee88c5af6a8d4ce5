"""The AllTick wire protocol: frames as msgspec Structs, codes per endpoint. Pure: no I/O, no clock.

Rules of this module:

1. Every frame in ../shared/PROTOCOL.md has one Struct here. Requests carry ``cmd_id`` (the tag),
   ``seq_id``, ``trace`` (<= 64 chars) and ``data``; responses echo ``seq_id``/``trace`` and carry
   ``ret``/``msg``; pushes carry only ``cmd_id`` and ``data``.
2. A subscription request is always a whole set (PROTOCOL.md: every 22004 REPLACES the connection's
   trade subscription). Encoders take a set of codes, dedupe and sort it, and refuse an empty one.
3. Vendor quirks are decoded as sent (``seq`` and ``tick_time`` as int or numeric string; ``tick_time``
   in seconds or milliseconds) and normalised into our ``Tick``: ``_fast_trades`` checks the usual
   fields of a whole batch at once, ``_checked_trade`` takes the rest one by one, with the exact
   message (``_normalise_trade`` is both for one trade; property tests hold them to one result).
   ``decode_batch`` first tries the usual form (``_UsualTrade``: integers, milliseconds, checked by
   msgspec while it decodes) and takes the general way for a batch with any frame in another form.
   Dispatch is a ``match`` on the tagged Struct types, after ``decode_batch``'s shortcut for trade pushes.
4. Prices, volumes and turnovers stay the vendor's decimal strings: exact, and cheap on the hot path.
   ``Tick.decimal_price()`` converts where arithmetic needs it. A price that is not a decimal string
   makes the frame malformed.
5. Decoding never raises anything but ``MalformedFrame`` for bad input. ``decode_batch`` never raises:
   bad frames are returned in ``errors`` so that one bad frame does not stop the feed.
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import Annotated, Final, Union, get_args

import msgspec

from actors.core.errors import InvalidCode, MalformedFrame, SubscriptionRefused, VendorError

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
#: tick_time values below this are seconds, at or above it milliseconds (1e11 ms is 1973, 1e11 s is 5138).
SECONDS_BELOW: Final = 100_000_000_000


class Endpoint(enum.StrEnum):
    """The two AllTick endpoints (PROTOCOL.md "Endpoints"); the value is the config key."""

    STOCK = "stock"
    FOREX_CRYPTO = "forex_crypto"

    @property
    def path(self) -> str:
        """The URL path of this endpoint."""
        return ENDPOINT_PATHS[self]


ENDPOINT_PATHS: Final = {
    Endpoint.STOCK: "/quote-stock-b-ws-api",
    Endpoint.FOREX_CRYPTO: "/quote-b-ws-api",
}


class Plan(msgspec.Struct, frozen=True):
    """Limits of one plan, per endpoint (PROTOCOL.md "Limits")."""

    connections_per_token: int
    codes_per_connection: int


PLANS: Final = {
    "free": Plan(1, 5),
    "basic": Plan(1, 100),
    "premium": Plan(3, 200),
    "professional": Plan(10, 3000),
    "all-hk": Plan(10, 3000),
    "all-cn": Plan(10, 3000),
    "all-us": Plan(10, 3000),
}
SUBSCRIBE_GAP_PER_CONNECTION_S: Final = 1.0  # PROTOCOL.md "Limits": one subscription request per second
SUBSCRIBE_GAP_PER_TOKEN_S: Final = 3.0  # PROTOCOL.md "Limits": 3 s between requests across connections
HEARTBEAT_INTERVAL_S: Final = 10.0  # PROTOCOL.md "Liveness": the client sends 22000 every 10 s
SERVER_HEARTBEAT_TIMEOUT_S: Final = 30.0  # PROTOCOL.md "Liveness": the server closes after 30 s

# --- requests ------------------------------------------------------------------------------------


class Symbol(msgspec.Struct, frozen=True, omit_defaults=True):
    """One entry of ``symbol_list``; ``depth_level`` only for order books."""

    code: str
    depth_level: int | None = None


class SymbolList(msgspec.Struct, frozen=True):
    symbol_list: list[Symbol]


class CancelData(msgspec.Struct, frozen=True):
    cancel_type: int


class Empty(msgspec.Struct, frozen=True):
    pass


class Request(msgspec.Struct, frozen=True, tag_field="cmd_id"):
    """Client to server. The tag is ``cmd_id``."""

    seq_id: int
    trace: str


class HeartbeatRequest(Request, tag=CMD_HEARTBEAT):
    data: Empty = Empty()


class SubscribeBook(Request, tag=CMD_SUBSCRIBE_BOOK):
    data: SymbolList


class SubscribeTrades(Request, tag=CMD_SUBSCRIBE_TRADES):
    data: SymbolList


class Cancel(Request, tag=CMD_CANCEL):
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
        """This refusal as the exception a caller raises or reports (``ret`` other than 200)."""
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


class TradePush(Inbound, tag=CMD_TRADE_PUSH, gc=False):
    data: Trade


class BookPush(Inbound, tag=CMD_BOOK_PUSH, gc=False):
    data: Book


class Response(Inbound, _Answer):
    """An answer to a request: ``ret`` 200 is success, anything else a refusal (``error()``)."""

    ret: int
    msg: str = ""
    seq_id: int = 0
    trace: str = ""


class HeartbeatAck(Response, tag=CMD_HEARTBEAT_ACK):
    pass


class SubscribeBookAck(Response, tag=CMD_SUBSCRIBE_BOOK_ACK):
    pass


class SubscribeTradesAck(Response, tag=CMD_SUBSCRIBE_TRADES_ACK):
    pass


class CancelAck(Response, tag=CMD_CANCEL_ACK):
    pass


class ErrorFrame(Response, tag=0):
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


# --- our normalised records ----------------------------------------------------------------------


class Tick(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """One trade as strategies see it. Prices are the vendor's exact decimal strings.

    ``tick_time`` is in milliseconds since the epoch whatever the vendor sent; ``received_ns`` is the
    wall-clock time (``time.time_ns()``) at which the connection read the first frame of its batch
    (at most ``batch_max_age_ms`` earlier than this frame). ``sent_ns`` is the sender's wall-clock
    send time where the source stamps one (the bundled simulator does, for latency benchmarks; the
    vendor does not: 0).
    """

    code: str
    seq: int
    tick_time: int
    price: str
    volume: str
    turnover: str
    trade_direction: int
    received_ns: int = 0
    sent_ns: int = 0

    def decimal_price(self) -> Decimal:
        """The price as an exact ``Decimal``."""
        return Decimal(self.price)


class BookTick(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """One order-book snapshot; levels are ``(price, volume)`` string pairs, best first."""

    code: str
    seq: int
    tick_time: int
    bids: tuple[tuple[str, str], ...]
    asks: tuple[tuple[str, str], ...]
    received_ns: int = 0


class DecodedBatch(msgspec.Struct, gc=False):
    """What ``decode_batch`` returns: frames sorted by kind, arrival order kept within each."""

    ticks: list[Tick]
    books: list[BookTick]
    responses: list[AnyResponse]
    errors: list[MalformedFrame]
    usual: bool = True  # every frame was in the usual form (``decode_batch``'s ``usual``)


# re.ASCII: without it \d also matches other scripts' digits ("\u0661\u0662\u0663").
_DECIMAL_RE: Final = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?", re.ASCII)
# Seconds (or milliseconds) with a fraction, e.g. "1700000000.123": digits only, no sign or exponent.
_FRACTIONAL_RE: Final = re.compile(r"([0-9]{0,20})\.([0-9]*)", re.ASCII)
UINT64_MAX: Final = 2**64 - 1
_UINT64_DIGITS: Final = len(str(UINT64_MAX))
_decode_inbound = msgspec.json.Decoder(InboundFrame).decode
_decode_other = msgspec.json.Decoder(OtherResponse).decode
# msgspec's integer bounds stop at 2**63-1: a higher seq, still valid, takes the general path.
_INT64_MAX: Final = 2**63 - 1


class _UsualTrade(msgspec.Struct, frozen=True, gc=False):
    """22998 ``data`` in the form PROTOCOL.md's table gives (and the bundled simulator sends): ``seq``
    and ``tick_time`` integers, the time in milliseconds; msgspec checks both while it decodes.
    """

    code: str
    seq: Annotated[int, msgspec.Meta(ge=0, le=_INT64_MAX)]
    tick_time: Annotated[int, msgspec.Meta(ge=SECONDS_BELOW, le=_INT64_MAX)]
    price: str
    volume: str = ""
    turnover: str = ""
    trade_direction: int = 0
    sent_ns: int = 0


class _UsualTradePush(Inbound, tag=CMD_TRADE_PUSH, gc=False):
    data: _UsualTrade


# The frames of a batch in the usual form: InboundFrame with TradePush swapped for _UsualTradePush.
_USUAL_MEMBERS = tuple(_UsualTradePush if t is TradePush else t for t in get_args(InboundFrame))
_USUAL_FRAME = Union[_USUAL_MEMBERS]  # noqa: UP007 - a union built from a tuple
_decode_usual = msgspec.json.Decoder(_USUAL_FRAME).decode


def _show(value: object) -> str:
    """A repr short enough for an exception's reason."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _int_field(name: str, value: int | str, frame: bytes | str) -> int:
    if isinstance(value, str):
        if not (value.isascii() and value.isdigit()):
            raise MalformedFrame(f"{name} {_show(value)} is not an integer or numeric string", frame)
        # Length before int(): above 4300 digits int() raises ValueError, not MalformedFrame.
        if len(value.lstrip("0")) > _UINT64_DIGITS:
            raise MalformedFrame(f"{name} {_show(value)} is out of range", frame)
        value = int(value)
    if value < 0:
        raise MalformedFrame(f"{name} {_show(value)} is negative", frame)
    if value > UINT64_MAX:
        raise MalformedFrame(f"{name} {_show(value)} is out of range", frame)
    return value


def _tick_time_ms(value: int | str, frame: bytes | str) -> int:
    # PROTOCOL.md, our reading: the table says ms, the vendor's example seconds. Normalise to ms.
    if isinstance(value, str) and "." in value:
        # With a fraction, e.g. "1700000000.123": split the digits, exact, no float and no Decimal
        # context rounding; a fraction of a millisecond is dropped.
        match = _FRACTIONAL_RE.fullmatch(value)
        if match is None or match.group(0) == ".":
            raise MalformedFrame(f"tick_time {_show(value)} is not a number", frame)
        whole = int(match.group(1) or "0")
        if whole >= SECONDS_BELOW:
            return _int_field("tick_time", whole, frame)
        return whole * 1000 + int((match.group(2) + "000")[:3])
    number = _int_field("tick_time", value, frame)
    return number * 1000 if number < SECONDS_BELOW else number


def _decimal(name: str, value: str, frame: bytes | str, *, required: bool) -> str:
    if value == "" and not required:
        return value
    if _DECIMAL_RE.fullmatch(value) is None:
        raise MalformedFrame(f"{name} {_show(value)} is not a decimal string", frame)
    return value


def _normalise_trade(trade: Trade, frame: bytes | str, received_ns: int) -> Tick:
    """The Tick of one trade push: the batch's fast path for a batch of one (``_fast_trades``), else
    the field-by-field checks with their exact message.
    """
    fast = _fast_trades([trade], received_ns)
    return _checked_trade(trade, frame, received_ns) if fast is None else fast[0]


def _checked_trade(trade: Trade, frame: bytes | str, received_ns: int) -> Tick:
    return Tick(
        code=trade.code,
        seq=_int_field("seq", trade.seq, frame),
        tick_time=_tick_time_ms(trade.tick_time, frame),
        price=_decimal("price", trade.price, frame, required=True),
        volume=_decimal("volume", trade.volume, frame, required=False),
        turnover=_decimal("turnover", trade.turnover, frame, required=False),
        trade_direction=trade.trade_direction,
        received_ns=received_ns,
        sent_ns=trade.sent_ns,
    )


def _levels(levels: list[Level], frame: bytes | str) -> tuple[tuple[str, str], ...]:
    return tuple(
        (
            _decimal("price", lv.price, frame, required=True),
            _decimal("volume", lv.volume, frame, required=False),
        )
        for lv in levels
    )


def _normalise_book(book: Book, frame: bytes | str, received_ns: int) -> BookTick:
    return BookTick(
        code=book.code,
        seq=_int_field("seq", book.seq, frame),
        tick_time=_tick_time_ms(book.tick_time, frame),
        bids=_levels(book.bids, frame),
        asks=_levels(book.asks, frame),
        received_ns=received_ns,
    )


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


def decode_batch(frames: Sequence[bytes | str], received_ns: int = 0, *, usual: bool = True) -> DecodedBatch:
    """Decode many raw frames in one call. Never raises: bad frames land in ``errors``.

    ``usual``: try the usual form first (``_UsualTrade``: integer seq and tick_time in milliseconds,
    checked by msgspec as it decodes), and decode the whole batch the general way when any frame is
    not in it (``DecodedBatch.usual`` then says False: a caller whose feed sends another form can skip
    the try for a while). The result is the same either way; the usual form is only cheaper.
    """
    if not frames:
        return DecodedBatch([], [], [], [])  # nothing in another form either
    if usual:
        batch = _decode_usual_batch(frames, received_ns)
        if batch is not None:
            return batch
    batch = _decode_general_batch(frames, received_ns)
    batch.usual = False
    return batch


def _decode_usual_batch(frames: Sequence[bytes | str], received_ns: int) -> DecodedBatch | None:
    """``decode_batch`` for a batch whose every frame is a push or acknowledgement in the usual form;
    None at the first frame that is not.
    """
    decode = _decode_usual
    trades: list[_UsualTrade] = []
    books: list[BookTick] = []
    responses: list[AnyResponse] = []
    errors: list[MalformedFrame] = []
    for frame in frames:
        try:
            push = decode(frame)
        except Exception:  # noqa: BLE001 - another form, or malformed: the general path says which
            return None
        if type(push) is _UsualTradePush:  # the usual frame
            trades.append(push.data)
        elif type(push) is BookPush:
            try:
                books.append(_normalise_book(push.data, frame, received_ns))
            except MalformedFrame as exc:
                errors.append(exc)  # books are checked one by one on either path: the same verdicts
        else:
            responses.append(push)  # type: ignore[arg-type] - the union's other members are responses
    if not trades:
        return DecodedBatch([], books, responses, errors)
    ticks = _fast_trades(trades, received_ns, checked=True)
    if ticks is None:  # a price or volume out of the ordinary: the general path's checks, in order
        return None
    return DecodedBatch(ticks, books, responses, errors)


def _decode_general_batch(frames: Sequence[bytes | str], received_ns: int) -> DecodedBatch:
    trades: list[Trade] = []  # the trade pushes, checked together at the end
    trade_frames: list[tuple[int, bytes | str]] = []
    books: list[BookTick] = []
    responses: list[AnyResponse] = []
    errors: list[tuple[int, MalformedFrame]] = []  # with the frame's place in the batch
    decode = _decode_inbound
    for at, frame in enumerate(frames):
        try:
            push = decode(frame)
        except Exception:  # noqa: BLE001 - decode_frame below says what it was, exactly
            push = None
        if type(push) is TradePush:  # the usual frame
            trades.append(push.data)
            trade_frames.append((at, frame))
            continue
        try:
            match decode_frame(frame) if push is None else push:
                case BookPush(data=book):
                    books.append(_normalise_book(book, frame, received_ns))
                case response:
                    responses.append(response)
        except MalformedFrame as exc:
            errors.append((at, exc))
    ticks = _fast_trades(trades, received_ns) if trades else []
    if ticks is None:  # something unusual in the batch: trade by trade, each to its exact verdict
        ticks = []
        for (at, frame), trade in zip(trade_frames, trades, strict=True):
            try:
                ticks.append(_normalise_trade(trade, frame, received_ns))
            except MalformedFrame as exc:
                errors.append((at, exc))
        errors.sort(key=lambda error: error[0])
    return DecodedBatch(ticks, books, responses, [exc for _, exc in errors])


_TWO_POINTS: Final = re.compile(rb"\.[0-9]*\.")  # within one value: they are separated by commas
# Integers as JSON reads them, in range for a seq and for a tick_time in milliseconds (up to _INT64_MAX:
# a higher one, still valid, goes trade by trade).
_decode_seqs = msgspec.json.Decoder(list[Annotated[int, msgspec.Meta(ge=0, le=_INT64_MAX)]]).decode
_decode_times = msgspec.json.Decoder(
    list[Annotated[int, msgspec.Meta(ge=SECONDS_BELOW, le=_INT64_MAX)]]
).decode


def _fast_trades(
    trades: Sequence[Trade | _UsualTrade], received_ns: int, *, checked: bool = False
) -> list[Tick] | None:
    """The Ticks of the usual trades, each field checked once for the whole batch (a few byte-string
    operations in C instead of a dozen Python calls per tick): integer seq and tick_time in
    milliseconds (as numbers or digit strings), plain decimal strings; the same result as
    ``_checked_trade`` for each. None when any trade is unusual. ``checked``: the trades are
    ``_UsualTrade``s, whose seq and tick_time msgspec checked already.
    """
    if not (
        _all_plain([t.price for t in trades], required=True)
        and _all_plain([t.volume for t in trades], required=False)
        and _all_plain([t.turnover for t in trades], required=False)
    ):
        return None
    if checked:
        return [
            Tick(
                t.code,
                t.seq,
                t.tick_time,
                t.price,
                t.volume,
                t.turnover,  # type: ignore[arg-type]
                t.trade_direction,
                received_ns,
                t.sent_ns,
            )  # fmt: skip
            for t in trades
        ]
    seqs = _uints([t.seq for t in trades], _decode_seqs, 0)
    times = _uints([t.tick_time for t in trades], _decode_times, SECONDS_BELOW)
    if seqs is None or times is None:
        return None
    return [
        Tick(t.code, seq, tick_time, t.price, t.volume, t.turnover, t.trade_direction, received_ns, t.sent_ns)
        for t, seq, tick_time in zip(trades, seqs, times, strict=True)
    ]


def _uints(values: list[int | str], decode: Callable[[bytes], list[int]], low: int) -> list[int] | None:
    """The values as integers when every one is an integer in ``low``..2**64-1, or every one a string
    of ASCII digits without a leading zero for such an integer (``decode`` checks the range, up to
    2**63-1); else None.
    """
    try:
        text = ",".join(values).encode()  # type: ignore[arg-type]
    except TypeError:  # integers (Trade's fields are int | str), or a mix: then min() raises too
        try:
            in_range = min(values) >= low and max(values) <= UINT64_MAX  # type: ignore[type-var, operator]
        except TypeError:
            return None
        return values if in_range else None  # type: ignore[return-value]
    # Digits and commas only (bytes: ASCII, unlike str.isdigit); then JSON refuses an empty value and
    # a leading zero, and a comma within a value makes one too many.
    if text.translate(None, b"0123456789,"):
        return None
    try:
        ints = decode(b"[%b]" % text)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return ints if len(ints) == len(values) else None  # one empty string: "[]"


def _all_plain(values: list[str], *, required: bool) -> bool:
    """Every value ASCII digits with at most one point and at least one digit (or empty, when not
    ``required``).
    """
    text = f",{','.join(values)},".encode()
    return (
        not text.translate(None, b"0123456789,.")  # digits, points and the commas between only
        and text.count(b",") == len(values) + 1  # no comma inside a value
        and b",.," not in text  # a lone point
        and (not required or b",," not in text)
        and _TWO_POINTS.search(text) is None
    )


# --- codes ---------------------------------------------------------------------------------------

# Stock endpoint: AAPL.US, BRK.B.US, 700.HK, 600519.SH, 000627.SZ (PROTOCOL.md "Endpoints").
_STOCK_RE: Final = re.compile(r"[A-Z0-9][A-Z0-9\-]*(?:\.[A-Z0-9]+)?\.(?:US|HK|SH|SZ)")
# Forex/crypto endpoint: EURUSD, XAUUSD, USOIL, US500, BTCUSDT, 1000PEPEUSDT.
_FOREX_CRYPTO_RE: Final = re.compile(r"[A-Z0-9]{2,24}")
MAX_CODE_CHARS: Final = 32

_US_EXCHANGES: Final = frozenset({"NASDAQ", "NYSE", "AMEX", "ARCA", "BATS", "NYSEARCA", "US"})
_HK_EXCHANGES: Final = frozenset({"HKEX", "HKG", "SEHK", "HK"})
_SH_EXCHANGES: Final = frozenset({"SSE", "SHA", "SH", "SHSE"})
_SZ_EXCHANGES: Final = frozenset({"SZSE", "SHE", "SZ"})
_QUOTE_CURRENCIES: Final = (
    "USDT",
    "USDC",
    "USD",
    "EUR",
    "JPY",
    "GBP",
    "AUD",
    "CHF",
    "CAD",
    "BTC",
    "ETH",
    "HKD",
)
_SUFFIX_ALIASES: Final = {"SS": "SH", "O": "US", "N": "US", "OQ": "US", "K": "US"}


def _stock_hint(exchange: str, symbol: str) -> str | None:
    if exchange in _US_EXCHANGES:
        return f"{symbol}.US"
    if exchange in _HK_EXCHANGES and symbol.isdigit():
        return f"{int(symbol)}.HK"
    if exchange in _SH_EXCHANGES and symbol.isdigit():
        return f"{symbol}.SH"
    if exchange in _SZ_EXCHANGES and symbol.isdigit():
        return f"{symbol}.SZ"
    return None


def _looks_like_pair(symbol: str) -> bool:
    return len(symbol) >= 5 and symbol.endswith(_QUOTE_CURRENCIES)


def guess_code(code: str) -> str | None:
    """The vendor's notation for a code written another way, where it can be guessed; else None.

    ``NASDAQ:AAPL`` -> ``AAPL.US``, ``aapl`` -> ``AAPL.US``, ``BTC/USDT`` -> ``BTCUSDT``,
    ``HKEX:0700`` -> ``700.HK``, ``600519.SS`` -> ``600519.SH``.
    """
    text = code.strip()
    if not text:
        return None
    upper = text.upper()
    if ":" in upper:
        exchange, _, symbol = upper.partition(":")
        symbol = re.sub(r"[/\-_ ]", "", symbol)
        guessed = _stock_hint(exchange, symbol)
        if guessed is None and _FOREX_CRYPTO_RE.fullmatch(symbol):
            guessed = symbol
        return guessed if guessed != code and guessed and _valid_shape(guessed) else None
    if "." in upper:
        symbol, _, suffix = upper.rpartition(".")
        suffix = _SUFFIX_ALIASES.get(suffix, suffix)
        guessed = f"{symbol}.{suffix}"
    else:
        squeezed = re.sub(r"[/\-_ ]", "", upper)
        if squeezed != upper or _looks_like_pair(squeezed):
            guessed = squeezed
        elif squeezed.isalpha() and len(squeezed) <= 5:
            guessed = f"{squeezed}.US"
        else:
            guessed = squeezed
    return guessed if guessed != code and _valid_shape(guessed) else None


def _valid_shape(code: str) -> bool:
    return bool(_STOCK_RE.fullmatch(code) or _FOREX_CRYPTO_RE.fullmatch(code))


def endpoint_of(code: object) -> Endpoint:
    """The endpoint that serves ``code``.

    Raises:
        InvalidCode: the code is not a string, empty, too long, or not in the vendor's notation
            (the exception's ``hint`` carries the vendor's notation where it can be guessed).

    """
    if not isinstance(code, str):
        raise InvalidCode(repr(code), f"a code must be a string, not {type(code).__name__}")
    if not code:
        raise InvalidCode(code, "empty code")
    if len(code) > MAX_CODE_CHARS:
        raise InvalidCode(code[:MAX_CODE_CHARS] + "...", f"longer than {MAX_CODE_CHARS} characters")
    if _STOCK_RE.fullmatch(code):
        return Endpoint.STOCK
    if _FOREX_CRYPTO_RE.fullmatch(code):
        return Endpoint.FOREX_CRYPTO
    if code != code.upper():
        reason = "codes are case-sensitive and upper-case"
    else:
        reason = "not in the vendor's notation (stocks like AAPL.US, 700.HK, 600519.SH; pairs like EURUSD, BTCUSDT)"
    hint = guess_code(code)
    raise InvalidCode(code, reason, hint)


def validate_code(code: object, endpoint: Endpoint | None = None) -> Endpoint:
    """Check ``code`` and, when ``endpoint`` is given, that this endpoint serves it.

    Raises:
        InvalidCode: see ``endpoint_of``; or the code belongs to the other endpoint.

    """
    found = endpoint_of(code)
    # Endpoint(...) so that the config's string "stock" compares equal to Endpoint.STOCK.
    if endpoint is not None and found is not (wanted := Endpoint(endpoint)):
        raise InvalidCode(str(code), f"belongs to the {found.value} endpoint, not {wanted.value}")
    return found
