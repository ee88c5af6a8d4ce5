"""Frame building: what the server writes, as bytes or as the dict it encodes. No I/O.

The push Structs (encoded once per frame), raw WebSocket text frames, and the response/error envelope.
"""

from __future__ import annotations

import struct
from typing import Any

import msgspec

from actors.sim.protocol import CMD_BOOK_PUSH, CMD_TRADE_PUSH, ERROR_MESSAGES


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


encode = msgspec.json.Encoder().encode
decode_any = msgspec.json.Decoder().decode


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
    return ws_text_frame(encode(TradePush(cmd_id=CMD_TRADE_PUSH, data=trade)))


def book_frame(book: BookData, depth: int) -> bytes:
    """The wire bytes of a 22999 push cut to ``depth`` levels per side."""
    if depth < len(book.bids) or depth < len(book.asks):
        book = msgspec.structs.replace(book, bids=book.bids[:depth], asks=book.asks[:depth])
    return ws_text_frame(encode(BookPush(cmd_id=CMD_BOOK_PUSH, data=book)))


def error_frame(
    ret: int, msg: str | None = None, *, cmd_id: int = 0, seq_id: int = 0, trace: str = ""
) -> dict[str, Any]:
    """A response or unsolicited error frame in PROTOCOL.md's envelope, keys in the vendor's order."""
    return {
        "ret": ret,
        "msg": ERROR_MESSAGES.get(ret, "error") if msg is None else msg,
        "cmd_id": cmd_id,
        "seq_id": seq_id,
        "trace": trace,
        "data": {},
    }
