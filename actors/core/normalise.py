"""Normalisation: raw trade and order-book pushes in, our ``Tick`` and ``BookTick`` out. Pure: no I/O.

Rules of this module:

1. Vendor quirks are decoded as sent (``seq`` and ``tick_time`` as int or numeric string; ``tick_time``
   in seconds or milliseconds) and normalised into our ``Tick``: ``_fast_trades`` checks the usual
   fields of a whole batch at once, ``_checked_trade`` takes the rest one by one, with the exact
   message (``_normalise_trade`` is both for one trade; property tests hold them to one result).
   ``decode_batch`` first tries the usual form (``_UsualTrade``: integers, milliseconds, checked by
   msgspec while it decodes) and takes the general way for a batch with any frame in another form.
2. Prices, volumes and turnovers stay the vendor's decimal strings: exact, and cheap on the hot path.
   ``Tick.decimal_price()`` converts where arithmetic needs it. A price that is not a decimal string
   makes the frame malformed.
3. ``decode_batch`` never raises: bad frames are returned in ``errors`` so that one bad frame does not
   stop the feed. It is the decoder's hot path: no per-tick indirection here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Annotated, Final, cast

import msgspec

from actors.core.errors import MalformedFrame
from actors.core.wire import (
    CMD_TRADE_PUSH,
    AnyResponse,
    Book,
    BookPush,
    CancelAck,
    ErrorFrame,
    HeartbeatAck,
    Inbound,
    InboundFrame,
    Level,
    SubscribeBookAck,
    SubscribeTradesAck,
    Trade,
    TradePush,
    decode_frame,
)

#: tick_time values below this are seconds, at or above it milliseconds (1e11 ms is 1973, 1e11 s is 5138).
SECONDS_BELOW: Final = 100_000_000_000


class Tick(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """One trade as strategies see it. Prices are the vendor's exact decimal strings.

    ``tick_time`` is in milliseconds since the epoch whatever the vendor sent; ``received_ns`` is the
    wall-clock time (``time.time_ns()``) at which the connection read the first frame of its batch
    (at most ``batch_max_age_ms`` earlier than this frame). ``sent_ns`` is the sender's wall-clock
    send time where the source stamps one (the bundled simulator does, for latency benchmarks; the
    vendor does not: 0).

    Attributes:
        code: the vendor's code, e.g. ``AAPL.US``, ``700.HK``, ``EURUSD``.
        seq: the vendor's sequence number of this code's trades (sent as an integer or a numeric string).
        tick_time: the trade's time, milliseconds since the epoch (a vendor value in seconds is converted).
        price: the vendor's exact decimal string; ``decimal_price()`` gives a ``Decimal``.
        volume: the vendor's exact decimal string; ``""`` when not sent (forex, metals, CFD indices).
        turnover: the vendor's exact decimal string; ``""`` when not sent.
        trade_direction: 0 default, 1 buy, 2 sell.
        received_ns: when the connection read the first frame of this tick's batch, ``time.time_ns()``.
        sent_ns: the sender's send time where the source stamps one, else 0.

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
    """One order-book snapshot; levels are ``(price, volume)`` string pairs, best first.

    Attributes:
        code: the vendor's code.
        seq: the vendor's sequence number of this code's book pushes (separate from its trades').
        tick_time: the snapshot's time, milliseconds since the epoch.
        bids: ``(price, volume)`` pairs of exact decimal strings, best (highest) first.
        asks: ``(price, volume)`` pairs of exact decimal strings, best (lowest) first.
        received_ns: when the connection read the first frame of this push's batch, ``time.time_ns()``.

    """

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
    #: Every tick's price is an unsigned decimal above zero and every volume unsigned (checked for the
    #: whole batch at once): the per-tick check need not look at them again (``TickCheck.sift``).
    sound: bool = False


# re.ASCII: without it \d also matches other scripts' digits ("\u0661\u0662\u0663").
_DECIMAL_RE: Final = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?", re.ASCII)
# Seconds (or milliseconds) with a fraction, e.g. "1700000000.123": digits only, no sign or exponent.
_FRACTIONAL_RE: Final = re.compile(r"([0-9]{0,20})\.([0-9]*)", re.ASCII)
UINT64_MAX: Final = 2**64 - 1
_UINT64_DIGITS: Final = len(str(UINT64_MAX))
_decode_inbound = msgspec.json.Decoder(InboundFrame).decode
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


class _UsualTradePush(Inbound, tag=CMD_TRADE_PUSH, gc=False, frozen=True):
    data: _UsualTrade


# The frames of a batch in the usual form: InboundFrame with TradePush swapped for _UsualTradePush
# (written out so that type checkers read it; tests/test_normalise.py holds it to InboundFrame's members).
_UsualFrame = (
    _UsualTradePush | BookPush | HeartbeatAck | SubscribeBookAck | SubscribeTradesAck | CancelAck | ErrorFrame
)
_decode_usual = msgspec.json.Decoder(_UsualFrame).decode


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
    return _checked_trade(trade, frame, received_ns) if fast is None else fast[0][0]


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
            responses.append(push)  # type: ignore[arg-type]  # the union's other members are responses
    if not trades:
        return DecodedBatch([], books, responses, errors)
    fast = _fast_trades(trades, received_ns, checked=True)
    if fast is None:  # a price or volume out of the ordinary: the general path's checks, in order
        return None
    return DecodedBatch(fast[0], books, responses, errors, sound=fast[1])


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
                    # mypy does not narrow on `type(push) is TradePush` above; the trade pushes left there.
                    responses.append(response)  # type: ignore[arg-type]
        except MalformedFrame as exc:
            errors.append((at, exc))
    fast = _fast_trades(trades, received_ns) if trades else ([], True)
    ticks = fast[0] if fast is not None else []
    if fast is None:  # something unusual in the batch: trade by trade, each to its exact verdict
        for (at, frame), trade in zip(trade_frames, trades, strict=True):
            try:
                ticks.append(_normalise_trade(trade, frame, received_ns))
            except MalformedFrame as exc:
                errors.append((at, exc))
        errors.sort(key=lambda error: error[0])
    return DecodedBatch(
        ticks, books, responses, [exc for _, exc in errors], sound=fast is not None and fast[1]
    )


_TWO_POINTS: Final = re.compile(rb"\.[0-9]*\.")  # within one value: they are separated by commas
_ZERO: Final = re.compile(rb",[0.]+(?=,)")  # a plain value without a digit above 0: not above zero
# Integers as JSON reads them, in range for a seq and for a tick_time in milliseconds (up to _INT64_MAX:
# a higher one, still valid, goes trade by trade).
_decode_seqs = msgspec.json.Decoder(list[Annotated[int, msgspec.Meta(ge=0, le=_INT64_MAX)]]).decode
_decode_times = msgspec.json.Decoder(
    list[Annotated[int, msgspec.Meta(ge=SECONDS_BELOW, le=_INT64_MAX)]]
).decode


def _fast_trades(
    trades: Sequence[Trade | _UsualTrade], received_ns: int, *, checked: bool = False
) -> tuple[list[Tick], bool] | None:
    """The Ticks of the usual trades, each field checked once for the whole batch (a few byte-string
    operations in C instead of a dozen Python calls per tick): integer seq and tick_time in
    milliseconds (as numbers or digit strings), plain decimal strings; the same result as
    ``_checked_trade`` for each. None when any trade is unusual. ``checked``: the trades are
    ``_UsualTrade``s, whose seq and tick_time msgspec checked already. With the Ticks comes whether
    every price is above zero (``DecodedBatch.sound``; a plain volume is never negative).
    """
    prices = _plain_text([t.price for t in trades], required=True)
    if not (
        prices is not None
        and _all_plain([t.volume for t in trades], required=False)
        and _all_plain([t.turnover for t in trades], required=False)
    ):
        return None
    sound = _ZERO.search(prices) is None
    if checked:
        # Once per batch: with checked=True the caller passes _UsualTrades (_decode_usual_batch).
        usual = cast("Sequence[_UsualTrade]", trades)
        return [
            Tick(
                t.code,
                t.seq,
                t.tick_time,
                t.price,
                t.volume,
                t.turnover,
                t.trade_direction,
                received_ns,
                t.sent_ns,
            )
            for t in usual
        ], sound
    seqs = _uints([t.seq for t in trades], _decode_seqs, 0)
    times = _uints([t.tick_time for t in trades], _decode_times, SECONDS_BELOW)
    if seqs is None or times is None:
        return None
    return [
        Tick(t.code, seq, tick_time, t.price, t.volume, t.turnover, t.trade_direction, received_ns, t.sent_ns)
        for t, seq, tick_time in zip(trades, seqs, times, strict=True)
    ], sound


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
    return _plain_text(values, required=required) is not None


def _plain_text(values: list[str], *, required: bool) -> bytes | None:
    """``b",v1,v2,...,"`` when ``_all_plain(values)``, else None."""
    text = f",{','.join(values)},".encode()
    plain = (
        not text.translate(None, b"0123456789,.")  # digits, points and the commas between only
        and text.count(b",") == len(values) + 1  # no comma inside a value
        and b",.," not in text  # a lone point
        and (not required or b",," not in text)
        and _TWO_POINTS.search(text) is None
    )
    return text if plain else None
