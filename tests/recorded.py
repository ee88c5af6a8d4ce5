"""The recorded vendor frames of tests/frames/ (one file per quirk, exactly as the bytes would arrive)
and what each must decode to, shared by tests/test_wire.py and tests/test_normalise.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from actors.core import normalise, wire
from actors.core.errors import (
    MalformedFrame,
)

FRAMES_DIR = Path(__file__).parent / "frames"


def frame(name: str) -> bytes:
    """The recorded frame ``tests/frames/<name>.json``, byte for byte."""
    return (FRAMES_DIR / f"{name}.json").read_bytes()


def malformed(call: Callable[..., object], *args: object) -> MalformedFrame:
    """Call and return the MalformedFrame it raises; any other outcome fails the test by name."""
    try:
        result = call(*args)
    except MalformedFrame as exc:
        return exc
    except Exception as exc:  # noqa: BLE001 - the point is to name whatever else escaped
        pytest.fail(f"{call.__name__} raised {type(exc).__name__}: {exc!r}, not MalformedFrame")
    pytest.fail(f"{call.__name__} returned {result!r} instead of raising MalformedFrame")


def decode_tick(frame_: bytes | str, received_ns: int = 0) -> normalise.Tick:
    """The one Tick ``decode_batch`` makes of a single trade push; its MalformedFrame is raised."""
    batch = normalise.decode_batch([frame_], received_ns)
    if batch.errors:
        raise batch.errors[0]
    if (len(batch.ticks), batch.books, batch.responses) != (1, [], []):
        raise MalformedFrame("not one 22998 trade push", frame_)
    return batch.ticks[0]


def only_malformed(call: Callable[..., object], *args: object) -> None:
    """Call; returning is fine, raising MalformedFrame is fine, anything else fails the test."""
    try:
        call(*args)
    except MalformedFrame:
        pass
    except Exception as exc:  # noqa: BLE001 - the point is to name whatever else escaped
        pytest.fail(f"{call.__name__} raised {type(exc).__name__}: {exc!r}, not MalformedFrame")


# --- what each recorded frame must decode to -------------------------------------------------------

EXPECTED_TICKS: dict[str, normalise.Tick] = {
    "push_trade_int_seq_ms": normalise.Tick(
        "BTCUSDT", 90817263, 1732550400123, "67321.45", "0.0153", "1030.018185", 1
    ),
    "push_trade_seq_string": normalise.Tick(
        "BTCUSDT", 90817264, 1732550400456, "67321.50", "0.2", "13464.3", 2
    ),
    "push_trade_tick_time_string": normalise.Tick(
        "AAPL.US", 55120, 1732550400789, "229.8700", "100", "22987.00", 0
    ),
    # The vendor's example gives seconds although the table says milliseconds: normalised to ms.
    "push_trade_tick_time_seconds": normalise.Tick(
        "700.HK", 1605509, 1732550400000, "412.200", "300", "123660.000", 1
    ),
    "push_trade_tick_time_fractional_seconds": normalise.Tick(
        "XAUUSD", 7731002, 1732550400250, "2631.47", "0", "0", 0
    ),
    # Unknown fields, in the envelope and in data, are ignored.
    "push_trade_extra_field": normalise.Tick("EURUSD", 3301, 1732550400901, "1.05213", "0", "0", 0),
}

_HK_BIDS = (
    ("412.200", "1200"),
    ("412.000", "2200"),
    ("411.800", "3200"),
    ("411.600", "4200"),
    ("411.400", "5200"),
    ("411.200", "6200"),
    ("411.000", "7200"),
    ("410.800", "8200"),
    ("410.600", "9200"),
    ("410.400", "10200"),
)
_HK_ASKS = (
    ("412.400", "800"),
    ("412.600", "1600"),
    ("412.800", "2400"),
    ("413.000", "3200"),
    ("413.200", "4000"),
    ("413.400", "4800"),
    ("413.600", "5600"),
    ("413.800", "6400"),
    ("414.000", "7200"),
    ("414.200", "8000"),
)
EXPECTED_BOOKS: dict[str, normalise.BookTick] = {
    # Forex carries no volume: the vendor sends "" and we keep "".
    "push_book_forex_one_level": normalise.BookTick(
        "EURUSD", 4410021, 1732550400312, (("1.05211", ""),), (("1.05215", ""),)
    ),
    "push_book_hk_ten_levels": normalise.BookTick("700.HK", 20817, 1732550400500, _HK_BIDS, _HK_ASKS),
    "push_book_one_side_empty": normalise.BookTick(
        "ETHUSDT", 662001, 1732550400640, (("3391.21", "1.502"), ("3391.20", "0.25")), ()
    ),
}

EXPECTED_RESPONSES: dict[str, wire.AnyResponse] = {
    "response_ack_heartbeat_22001": wire.HeartbeatAck(ret=200, msg="ok", seq_id=41, trace="stock-0-1-41"),
    "response_ack_subscribe_book_22003": wire.SubscribeBookAck(
        ret=200, msg="ok", seq_id=42, trace="stock-0-1-42"
    ),
    "response_ack_subscribe_trades_22005": wire.SubscribeTradesAck(
        ret=200, msg="ok", seq_id=43, trace="stock-0-1-43"
    ),
    "response_ack_cancel_22007": wire.CancelAck(ret=200, msg="ok", seq_id=44, trace="stock-0-1-44"),
    "response_refused_600_on_22005": wire.SubscribeTradesAck(
        ret=600, msg="code invalid", seq_id=7, trace="fx-0-3-7"
    ),
    "response_error_606_unsolicited": wire.ErrorFrame(
        ret=606, msg="too many requests and connection will be closed", seq_id=0, trace=""
    ),
    "response_error_401_token_invalid": wire.ErrorFrame(ret=401, msg="token invalid"),
    "response_unknown_cmd_id": wire.OtherResponse(
        ret=200, cmd_id=22011, msg="ok", seq_id=45, trace="stock-0-1-45"
    ),
}

#: Malformed frame -> a fragment its MalformedFrame.reason must contain.
EXPECTED_MALFORMED: dict[str, str] = {
    "malformed_truncated": "truncated",
    "malformed_price_number": "price",
    "malformed_seq_12a": "'12a'",
    "malformed_seq_negative": "negative",
    "malformed_missing_code": "`code`",
    "malformed_array_not_object": "array",
}
