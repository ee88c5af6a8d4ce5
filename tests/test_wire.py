"""Tests of actors.core.wire: one class per PROTOCOL.md topic. Pure: no Ray, no sockets, no sleeps.

Recorded vendor-style frames live in tests/frames/, one file per quirk, exactly as the bytes would
arrive. Every file there must have an expectation below (``FramesDirectoryTests`` checks that).

The classes subclass ``unittest.TestCase`` so that pytest collects them whatever their name
(its default ``python_classes`` is ``Test*``, and the style here names them ``<Topic>Tests``).
"""

from __future__ import annotations

import json
import unittest
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.core import wire
from actors.core.errors import (
    FRAME_EXCERPT_BYTES,
    InvalidCode,
    MalformedFrame,
    SubscriptionRefused,
    VendorError,
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


def decode_tick(frame_: bytes | str, received_ns: int = 0) -> wire.Tick:
    """The one Tick ``decode_batch`` makes of a single trade push; its MalformedFrame is raised."""
    batch = wire.decode_batch([frame_], received_ns)
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

EXPECTED_TICKS: dict[str, wire.Tick] = {
    "push_trade_int_seq_ms": wire.Tick(
        "BTCUSDT", 90817263, 1732550400123, "67321.45", "0.0153", "1030.018185", 1
    ),
    "push_trade_seq_string": wire.Tick("BTCUSDT", 90817264, 1732550400456, "67321.50", "0.2", "13464.3", 2),
    "push_trade_tick_time_string": wire.Tick(
        "AAPL.US", 55120, 1732550400789, "229.8700", "100", "22987.00", 0
    ),
    # The vendor's example gives seconds although the table says milliseconds: normalised to ms.
    "push_trade_tick_time_seconds": wire.Tick(
        "700.HK", 1605509, 1732550400000, "412.200", "300", "123660.000", 1
    ),
    "push_trade_tick_time_fractional_seconds": wire.Tick(
        "XAUUSD", 7731002, 1732550400250, "2631.47", "0", "0", 0
    ),
    # Unknown fields, in the envelope and in data, are ignored.
    "push_trade_extra_field": wire.Tick("EURUSD", 3301, 1732550400901, "1.05213", "0", "0", 0),
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
EXPECTED_BOOKS: dict[str, wire.BookTick] = {
    # Forex carries no volume: the vendor sends "" and we keep "".
    "push_book_forex_one_level": wire.BookTick(
        "EURUSD", 4410021, 1732550400312, (("1.05211", ""),), (("1.05215", ""),)
    ),
    "push_book_hk_ten_levels": wire.BookTick("700.HK", 20817, 1732550400500, _HK_BIDS, _HK_ASKS),
    "push_book_one_side_empty": wire.BookTick(
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


class FramesDirectoryTests(unittest.TestCase):
    """The recorded frames and the expectations above stay in step."""

    def test_every_frame_file_has_one_expectation(self) -> None:
        on_disk = sorted(path.stem for path in FRAMES_DIR.glob("*.json"))
        tables = [EXPECTED_TICKS, EXPECTED_BOOKS, EXPECTED_RESPONSES, EXPECTED_MALFORMED]
        expected = sorted(name for table in tables for name in table)
        assert on_disk == expected

    def test_frames_are_single_compact_frames(self) -> None:
        for path in FRAMES_DIR.glob("*.json"):
            with self.subTest(frame=path.name):
                raw = path.read_bytes()
                assert raw
                assert not raw.endswith(b"\n")  # as the bytes arrive: no trailing newline


# --- PROTOCOL.md "Frame envelope" ----------------------------------------------------------------


class EnvelopeTests(unittest.TestCase):
    """Requests: {"cmd_id", "seq_id", "trace", "data"}, seq_id uint32, trace <= 64 chars."""

    def test_heartbeat_is_exactly_the_documented_json(self) -> None:
        ids = wire.RequestIds("stock-0-1", start=41)
        assert wire.encode(wire.heartbeat(ids)) == (
            b'{"cmd_id":22000,"seq_id":41,"trace":"stock-0-1-41","data":{}}'
        )

    def test_subscribe_trades_is_exactly_the_documented_json(self) -> None:
        ids = wire.RequestIds("stock-0-1", start=7)
        request = wire.subscribe_trades(["AAPL.US", "700.HK"], ids)
        assert wire.encode(request) == (
            b'{"cmd_id":22004,"seq_id":7,"trace":"stock-0-1-7",'
            b'"data":{"symbol_list":[{"code":"700.HK"},{"code":"AAPL.US"}]}}'
        )

    def test_subscribe_book_is_exactly_the_documented_json(self) -> None:
        ids = wire.RequestIds("fx-2-0", start=8)
        with_depth = wire.subscribe_book(["XAUUSD", "EURUSD"], ids, depth_level=1)
        without_depth = wire.subscribe_book(["EURUSD"], ids)
        assert wire.encode(with_depth) == (
            b'{"cmd_id":22002,"seq_id":8,"trace":"fx-2-0-8","data":{"symbol_list":'
            b'[{"code":"EURUSD","depth_level":1},{"code":"XAUUSD","depth_level":1}]}}'
        )
        # PROTOCOL.md: depth_level is optional; without it the server sends one level.
        assert wire.encode(without_depth) == (
            b'{"cmd_id":22002,"seq_id":9,"trace":"fx-2-0-9","data":{"symbol_list":[{"code":"EURUSD"}]}}'
        )

    def test_cancel_is_exactly_the_documented_json(self) -> None:
        ids = wire.RequestIds("fx-2-0", start=10)
        assert wire.encode(wire.cancel(wire.CANCEL_TRADES, ids)) == (
            b'{"cmd_id":22006,"seq_id":10,"trace":"fx-2-0-10","data":{"cancel_type":2}}'
        )

    def test_every_request_has_the_four_envelope_keys_in_order(self) -> None:
        ids = wire.RequestIds("c")
        requests = [
            wire.heartbeat(ids),
            wire.subscribe_book(["EURUSD"], ids, depth_level=1),
            wire.subscribe_trades(["EURUSD"], ids),
            wire.cancel(wire.CANCEL_ALL, ids),
        ]
        for request in requests:
            with self.subTest(request=type(request).__name__):
                decoded = json.loads(wire.encode(request))
                assert list(decoded) == ["cmd_id", "seq_id", "trace", "data"]
                assert isinstance(decoded["data"], dict)
                assert 0 <= decoded["seq_id"] <= wire.UINT32_MAX
                assert len(decoded["trace"]) <= wire.TRACE_MAX_CHARS

    def test_each_request_type_carries_its_cmd_id(self) -> None:
        ids = wire.RequestIds("c")
        cmd_ids = [
            json.loads(wire.encode(request))["cmd_id"]
            for request in (
                wire.heartbeat(ids),
                wire.subscribe_book(["EURUSD"], ids),
                wire.subscribe_trades(["EURUSD"], ids),
                wire.cancel(wire.CANCEL_BOOK, ids),
            )
        ]
        assert cmd_ids == [22000, 22002, 22004, 22006]

    def test_requests_decode_back_to_themselves(self) -> None:
        # The simulator decodes what the client encodes: the tagged union must round-trip.
        decode = msgspec.json.Decoder(wire.AnyRequest).decode
        ids = wire.RequestIds("c")
        for request in (
            wire.heartbeat(ids),
            wire.subscribe_book(["EURUSD", "XAUUSD"], ids, depth_level=1),
            wire.subscribe_book(["EURUSD"], ids),
            wire.subscribe_trades(["AAPL.US"], ids),
            wire.cancel(wire.CANCEL_ALL, ids),
        ):
            with self.subTest(request=request):
                assert decode(wire.encode(request)) == request

    def test_trace_stays_within_64_chars_with_a_long_prefix(self) -> None:
        for prefix in ("p" * 53, "p" * 54, "x" * 500, "é" * 100):
            with self.subTest(prefix_len=len(prefix)):
                ids = wire.RequestIds(prefix, start=wire.UINT32_MAX)  # the widest seq_id: 10 digits
                for _ in range(3):
                    seq_id, trace = ids.next()
                    assert len(trace) <= wire.TRACE_MAX_CHARS
                    assert trace.endswith(f"-{seq_id}")

    def test_a_short_prefix_is_kept_verbatim(self) -> None:
        prefix = "q" * (wire.TRACE_MAX_CHARS - 11)
        assert wire.RequestIds(prefix, start=5).next() == (5, f"{prefix}-5")

    def test_long_prefixes_differing_only_at_the_end_still_give_distinct_traces(self) -> None:
        # The prefix names the sender (connection and incarnation, usually last): cutting it would
        # make two incarnations send the same traces.
        head = "stock-connection-" + "x" * 60
        first = wire.RequestIds(f"{head}-incarnation-1").next()
        second = wire.RequestIds(f"{head}-incarnation-2").next()
        assert first[0] == second[0]
        assert first[1] != second[1]
        assert max(len(first[1]), len(second[1])) <= wire.TRACE_MAX_CHARS

    def test_seq_id_and_trace_are_unique_over_many_calls(self) -> None:
        ids = wire.RequestIds("conn-3")
        pairs = [ids.next() for _ in range(20_000)]
        assert len({seq_id for seq_id, _ in pairs}) == len(pairs)
        assert len({trace for _, trace in pairs}) == len(pairs)
        assert [seq_id for seq_id, _ in pairs] == list(range(1, 20_001))

    def test_seq_id_wraps_within_uint32(self) -> None:
        ids = wire.RequestIds("w", start=wire.UINT32_MAX - 1)
        seq_ids = [ids.next()[0] for _ in range(4)]
        assert seq_ids == [wire.UINT32_MAX - 1, wire.UINT32_MAX, 0, 1]

    def test_start_outside_uint32_is_brought_inside(self) -> None:
        assert wire.RequestIds("w", start=2**32 + 5).next()[0] == 5
        assert wire.RequestIds("w", start=-1).next()[0] == wire.UINT32_MAX

    def test_requests_across_types_share_one_sequence(self) -> None:
        ids = wire.RequestIds("c", start=100)
        requests = [
            wire.heartbeat(ids),
            wire.subscribe_trades(["AAPL.US"], ids),
            wire.subscribe_book(["AAPL.US"], ids),
            wire.cancel(wire.CANCEL_ALL, ids),
        ]
        assert [r.seq_id for r in requests] == [100, 101, 102, 103]
        assert [r.trace for r in requests] == ["c-100", "c-101", "c-102", "c-103"]

    def test_subscription_commands_and_acks(self) -> None:
        # PROTOCOL.md "Limits": heartbeats are not counted against the subscription rate.
        assert frozenset({22002, 22004, 22006}) == wire.SUBSCRIPTION_CMDS
        assert wire.ACK_OF == {22000: 22001, 22002: 22003, 22004: 22005, 22006: 22007}


# --- PROTOCOL.md "Commands": overwrite semantics ------------------------------------------------


def _codes_sent(request: wire.SubscribeTrades | wire.SubscribeBook) -> list[str]:
    return [entry["code"] for entry in json.loads(wire.encode(request))["data"]["symbol_list"]]


class OverwriteTests(unittest.TestCase):
    """Every 22004 (22002) REPLACES the whole set: requests carry the whole set, sorted, deduped."""

    def test_subscribe_trades_carries_the_whole_set_sorted_and_deduped(self) -> None:
        ids = wire.RequestIds("c")
        request = wire.subscribe_trades(["TSLA.US", "AAPL.US", "TSLA.US", "700.HK", "AAPL.US"], ids)
        assert _codes_sent(request) == ["700.HK", "AAPL.US", "TSLA.US"]

    def test_adding_and_removing_send_the_whole_new_set(self) -> None:
        ids = wire.RequestIds("c")
        current = {"A.US", "B.US", "C.US"}
        assert _codes_sent(wire.subscribe_trades(current | {"E.US"}, ids)) == ["A.US", "B.US", "C.US", "E.US"]
        assert _codes_sent(wire.subscribe_trades(current - {"A.US"}, ids)) == ["B.US", "C.US"]

    def test_subscribe_book_carries_the_whole_set_sorted_and_deduped(self) -> None:
        ids = wire.RequestIds("c")
        request = wire.subscribe_book(("XAUUSD", "EURUSD", "XAUUSD"), ids, depth_level=1)
        assert _codes_sent(request) == ["EURUSD", "XAUUSD"]
        assert {entry.depth_level for entry in request.data.symbol_list} == {1}

    def test_any_iterable_of_codes_is_accepted(self) -> None:
        ids = wire.RequestIds("c")
        for codes in (["B.US", "A.US"], ("B.US", "A.US"), {"B.US", "A.US"}, frozenset({"A.US", "B.US"})):
            with self.subTest(codes=type(codes).__name__):
                assert _codes_sent(wire.subscribe_trades(codes, ids)) == ["A.US", "B.US"]
        assert _codes_sent(wire.subscribe_trades((c for c in ("B.US", "A.US")), ids)) == ["A.US", "B.US"]

    def test_empty_set_is_refused_before_encoding(self) -> None:
        # PROTOCOL.md, our reading: an empty symbol_list is a bad request; the client never sends one.
        ids = wire.RequestIds("c", start=1)
        for make in (wire.subscribe_trades, wire.subscribe_book):
            for codes in ([], set(), iter(())):
                with self.subTest(make=make.__name__), pytest.raises(SubscriptionRefused) as info:
                    make(codes, ids)
                assert info.value.problems == {}
                assert "empty" in str(info.value)
        # Nothing was encoded: no seq_id was spent.
        assert ids.next()[0] == 1

    def test_a_bare_string_is_not_a_set_of_its_characters(self) -> None:
        ids = wire.RequestIds("c", start=1)
        for make in (wire.subscribe_trades, wire.subscribe_book):
            with self.subTest(make=make.__name__), pytest.raises(TypeError, match="AAPL.US"):
                make("AAPL.US", ids)
        assert ids.next()[0] == 1

    def test_cancel_types(self) -> None:
        ids = wire.RequestIds("c")
        for cancel_type in (wire.CANCEL_ALL, wire.CANCEL_BOOK, wire.CANCEL_TRADES):
            with self.subTest(cancel_type=cancel_type):
                encoded = json.loads(wire.encode(wire.cancel(cancel_type, ids)))
                assert encoded["cmd_id"] == 22006
                assert encoded["data"] == {"cancel_type": cancel_type}
        assert (wire.CANCEL_ALL, wire.CANCEL_BOOK, wire.CANCEL_TRADES) == (0, 1, 2)

    def test_a_bad_cancel_type_raises_and_spends_no_seq_id(self) -> None:
        ids = wire.RequestIds("c", start=1)
        # True == 1 and 1.0 == 1, but they would go on the wire as `true` and `1.0`.
        for bad in (3, -1, 22006, True, 1.0, "2", None):
            with self.subTest(cancel_type=bad), pytest.raises(ValueError, match="cancel_type"):
                wire.cancel(bad, ids)  # type: ignore[arg-type]
        assert ids.next()[0] == 1


# --- PROTOCOL.md "22998 trade push" and "22999 order-book push" --------------------------------


class PushDecodeTests(unittest.TestCase):
    """Pushes decode as sent, then normalise: seq int, tick_time ms, prices the exact strings."""

    def test_every_recorded_trade_decodes_to_its_tick(self) -> None:
        for name, expected in EXPECTED_TICKS.items():
            with self.subTest(frame=name):
                assert decode_tick(frame(name)) == expected
                batch = wire.decode_batch([frame(name)])
                assert (batch.ticks, batch.books, batch.responses, batch.errors) == ([expected], [], [], [])

    def test_every_recorded_book_decodes_to_its_book_tick(self) -> None:
        for name, expected in EXPECTED_BOOKS.items():
            with self.subTest(frame=name):
                batch = wire.decode_batch([frame(name)])
                assert (batch.ticks, batch.books, batch.responses, batch.errors) == ([], [expected], [], [])

    def test_decode_frame_keeps_the_vendor_forms(self) -> None:
        decoded = wire.decode_frame(frame("push_trade_seq_string"))
        assert isinstance(decoded, wire.TradePush)
        assert decoded.cmd_id == 22998
        assert decoded.data.seq == "90817264"  # as sent; normalising is decode_batch's job
        book = wire.decode_frame(frame("push_book_hk_ten_levels"))
        assert isinstance(book, wire.BookPush)
        assert book.cmd_id == 22999
        assert len(book.data.bids) == len(book.data.asks) == 10

    def test_frames_decode_from_str_as_well_as_bytes(self) -> None:
        for name, expected in EXPECTED_TICKS.items():
            with self.subTest(frame=name):
                assert decode_tick(frame(name).decode("utf-8")) == expected

    def test_received_ns_is_carried_through(self) -> None:
        assert decode_tick(frame("push_trade_int_seq_ms"), received_ns=123).received_ns == 123
        batch = wire.decode_batch([frame("push_trade_int_seq_ms"), frame("push_book_one_side_empty")], 456)
        assert batch.ticks[0].received_ns == batch.books[0].received_ns == 456

    def test_tick_time_seconds_become_milliseconds(self) -> None:
        def tick_time(value: object) -> int:
            raw = {"cmd_id": 22998, "data": {"code": "EURUSD", "seq": 1, "tick_time": value, "price": "1"}}
            return decode_tick(msgspec.json.encode(raw)).tick_time

        below = wire.SECONDS_BELOW
        cases = {
            1732550400: 1732550400000,  # seconds, int
            "1732550400": 1732550400000,  # seconds, numeric string
            "1732550400.5": 1732550400500,  # fractional seconds
            "1732550400.123999": 1732550400123,  # a fraction of a millisecond is dropped, not rounded
            "1732550400.": 1732550400000,
            1732550400123: 1732550400123,  # milliseconds, int
            "1732550400123": 1732550400123,  # milliseconds, numeric string
            "1732550400123.75": 1732550400123,  # milliseconds with a fraction stay milliseconds
            below - 1: (below - 1) * 1000,  # the boundary: below it seconds ...
            below: below,  # ... at it milliseconds
            0: 0,
        }
        for value, expected in cases.items():
            with self.subTest(tick_time=value):
                assert tick_time(value) == expected

    def test_numeric_strings_and_ints_decode_alike(self) -> None:
        as_int = decode_tick(frame("push_trade_int_seq_ms"))
        raw = json.loads(frame("push_trade_int_seq_ms"))
        raw["data"]["seq"] = str(raw["data"]["seq"])
        raw["data"]["tick_time"] = str(raw["data"]["tick_time"])
        assert decode_tick(json.dumps(raw).encode()) == as_int

    def test_exact_price_strings_are_kept(self) -> None:
        # Trailing zeros, many decimals, exponent forms: the vendor's string, untouched.
        for price in ("229.8700", "0.000000012345678901234567890", "1E+3", "-37.63", "100", ".5", "5."):
            with self.subTest(price=price):
                raw = {
                    "cmd_id": 22998,
                    "data": {
                        "code": "USOIL",
                        "seq": 1,
                        "tick_time": 1,
                        "price": price,
                        "volume": price,
                        "turnover": price,
                    },
                }
                tick = decode_tick(msgspec.json.encode(raw))
                assert (tick.price, tick.volume, tick.turnover) == (price, price, price)

    def test_missing_volume_and_turnover_are_empty_strings(self) -> None:
        raw = b'{"cmd_id":22998,"data":{"code":"EURUSD","seq":1,"tick_time":1732550400123,"price":"1.05"}}'
        assert decode_tick(raw) == wire.Tick("EURUSD", 1, 1732550400123, "1.05", "", "", 0)

    def test_decimal_price_is_exact(self) -> None:
        tick = decode_tick(frame("push_trade_int_seq_ms"))
        assert isinstance(tick.decimal_price(), Decimal)
        assert tick.decimal_price() == Decimal("67321.45")
        raw = {
            "cmd_id": 22998,
            "data": {"code": "BTCUSDT", "seq": 1, "tick_time": 1, "price": "0.30000000000000000001"},
        }
        precise = decode_tick(msgspec.json.encode(raw))
        assert precise.decimal_price() == Decimal("0.3") + Decimal("0.00000000000000000001")
        assert precise.decimal_price() != Decimal(0.3)  # not via float

    def test_book_levels_are_best_first_and_one_side_may_be_empty(self) -> None:
        (book,) = wire.decode_batch([frame("push_book_one_side_empty")]).books
        assert book.asks == ()
        assert [Decimal(price) for price, _ in book.bids] == sorted(
            (Decimal(price) for price, _ in book.bids), reverse=True
        )
        (hk,) = wire.decode_batch([frame("push_book_hk_ten_levels")]).books
        assert len(hk.bids) == len(hk.asks) == 10
        assert Decimal(hk.bids[0][0]) < Decimal(hk.asks[0][0])

    def test_only_pushes_become_ticks_and_books(self) -> None:
        # Dispatch is a match on the tagged Struct: acks, errors and unlisted responses go to responses.
        for name in (
            "response_ack_subscribe_trades_22005",
            "response_error_401_token_invalid",
            "response_unknown_cmd_id",
        ):
            with self.subTest(frame=name):
                batch = wire.decode_batch([frame(name)])
                assert (batch.ticks, batch.books, batch.errors, len(batch.responses)) == ([], [], [], 1)


# --- PROTOCOL.md "Frame envelope" (responses) and "Error codes" -----------------------------------


class ResponseTests(unittest.TestCase):
    """Responses echo seq_id/trace and carry ret/msg; errors the server sends alone carry cmd_id 0."""

    def test_every_recorded_response_decodes(self) -> None:
        for name, expected in EXPECTED_RESPONSES.items():
            with self.subTest(frame=name):
                decoded = wire.decode_frame(frame(name))
                assert type(decoded) is type(expected)
                assert decoded == expected
                batch = wire.decode_batch([frame(name)])
                assert (batch.ticks, batch.books, batch.responses, batch.errors) == ([], [], [expected], [])

    def test_acks_carry_their_cmd_id_and_echo_seq_id_and_trace(self) -> None:
        cases = {
            "response_ack_heartbeat_22001": (22001, 41, "stock-0-1-41"),
            "response_ack_subscribe_book_22003": (22003, 42, "stock-0-1-42"),
            "response_ack_subscribe_trades_22005": (22005, 43, "stock-0-1-43"),
            "response_ack_cancel_22007": (22007, 44, "stock-0-1-44"),
        }
        for name, (cmd_id, seq_id, trace) in cases.items():
            with self.subTest(frame=name):
                ack = wire.decode_frame(frame(name))
                assert isinstance(ack, wire.Response)
                assert (ack.cmd_id, ack.seq_id, ack.trace, ack.ret, ack.msg, ack.ok) == (
                    cmd_id,
                    seq_id,
                    trace,
                    200,
                    "ok",
                    True,
                )

    def test_each_ack_answers_its_request(self) -> None:
        for request_cmd, ack_cmd in wire.ACK_OF.items():
            raw = {"ret": 200, "msg": "ok", "cmd_id": ack_cmd, "seq_id": 1, "trace": "t-1", "data": {}}
            with self.subTest(request=request_cmd):
                assert wire.decode_frame(msgspec.json.encode(raw)).cmd_id == ack_cmd

    def test_a_600_refusal_is_a_trades_ack_that_is_not_ok(self) -> None:
        refusal = wire.decode_frame(frame("response_refused_600_on_22005"))
        assert isinstance(refusal, wire.SubscribeTradesAck)
        assert (refusal.ret, refusal.msg, refusal.cmd_id, refusal.seq_id, refusal.trace) == (
            600,
            "code invalid",
            22005,
            7,
            "fx-0-3-7",
        )
        assert not refusal.ok
        error = VendorError(refusal.ret, refusal.msg, refusal.cmd_id, refusal.seq_id)
        assert str(error).startswith("600 code invalid for cmd_id 22005 (seq_id 7)")

    def test_unsolicited_errors_have_cmd_id_0(self) -> None:
        for name, ret in (("response_error_606_unsolicited", 606), ("response_error_401_token_invalid", 401)):
            with self.subTest(frame=name):
                error = wire.decode_frame(frame(name))
                assert isinstance(error, wire.ErrorFrame)
                assert (error.cmd_id, error.ret, error.ok) == (0, ret, False)
        token = wire.decode_frame(frame("response_error_401_token_invalid"))
        assert (token.msg, token.seq_id, token.trace) == ("token invalid", 0, "")  # absent: defaults

    def test_an_unknown_cmd_id_is_kept_as_other_response(self) -> None:
        other = wire.decode_frame(frame("response_unknown_cmd_id"))
        assert isinstance(other, wire.OtherResponse)
        assert (other.cmd_id, other.ret, other.msg, other.seq_id, other.trace, other.ok) == (
            22011,
            200,
            "ok",
            45,
            "stock-0-1-45",
            True,
        )
        refused = wire.decode_frame(b'{"ret":400,"msg":"request data param invalid","cmd_id":22013}')
        assert isinstance(refused, wire.OtherResponse)
        assert (refused.cmd_id, refused.ret, refused.ok) == (22013, 400, False)

    def test_an_unknown_cmd_id_without_ret_is_malformed(self) -> None:
        malformed(wire.decode_frame, b'{"cmd_id":22013,"data":{}}')


# --- frames PROTOCOL.md does not allow ------------------------------------------------------------


class MalformedTests(unittest.TestCase):
    """Bad input raises MalformedFrame and nothing else; decode_batch never raises."""

    def test_every_recorded_malformed_frame_raises_malformed_frame(self) -> None:
        for name, fragment in EXPECTED_MALFORMED.items():
            with self.subTest(frame=name):
                raw = frame(name)
                exc = malformed(decode_tick, raw)
                assert fragment in exc.reason
                assert exc.frame == raw[:FRAME_EXCERPT_BYTES]
                assert exc.frame_len == len(raw)
                assert exc.reason in str(exc)

    def test_decode_batch_collects_every_recorded_malformed_frame(self) -> None:
        names = list(EXPECTED_MALFORMED)
        batch = wire.decode_batch([frame(name) for name in names])
        assert (batch.ticks, batch.books, batch.responses) == ([], [], [])
        assert [exc.frame for exc in batch.errors] == [frame(name)[:FRAME_EXCERPT_BYTES] for name in names]

    def test_structural_errors_are_caught_by_decode_frame_itself(self) -> None:
        for name in (
            "malformed_truncated",
            "malformed_price_number",
            "malformed_missing_code",
            "malformed_array_not_object",
        ):
            with self.subTest(frame=name):
                malformed(wire.decode_frame, frame(name))

    def test_the_offending_bytes_are_kept_truncated_to_200(self) -> None:
        raw = b'{"cmd_id":22998,"data":{"code":"' + b"A" * 1000 + b'","seq":"12a","tick_time":1,"price":"1"}}'
        exc = malformed(decode_tick, raw)
        assert exc.frame == raw[:200]
        assert len(exc.frame) == FRAME_EXCERPT_BYTES == 200
        assert exc.frame_len == len(raw)
        assert f"({len(raw)} bytes)" in str(exc)
        assert "'12a'" in exc.reason

    def test_a_str_frame_is_kept_as_utf8_bytes(self) -> None:
        exc = malformed(wire.decode_frame, '{"cmd_id": 22998, "data": "é"}')
        assert exc.frame == '{"cmd_id": 22998, "data": "é"}'.encode()

    def test_bad_field_values_are_malformed(self) -> None:
        base = {"code": "BTCUSDT", "seq": 1, "tick_time": 1732550400123, "price": "1.5"}
        cases = {
            "price not a decimal": {"price": "abc"},
            "price empty": {"price": ""},
            "price nan": {"price": "NaN"},
            "price infinity": {"price": "Infinity"},
            "price with spaces": {"price": " 1.5"},
            "price with a newline": {"price": "1.5\n"},
            "price in another script's digits": {"price": "\u0661\u0662\u0663"},
            "volume not a decimal": {"volume": "lots"},
            "turnover a long non-decimal": {"turnover": "9" * 1000 + "x"},
            "seq float": {"seq": 1.5},
            "seq empty string": {"seq": ""},
            "seq with a sign": {"seq": "+5"},
            "seq bool": {"seq": True},
            "seq null": {"seq": None},
            "seq beyond uint64": {"seq": 2**64},
            "seq string beyond uint64": {"seq": "18446744073709551616"},
            "seq 5000 digits": {"seq": "1" * 5000},
            "tick_time negative": {"tick_time": -1},
            "tick_time negative fraction": {"tick_time": "-0.001"},
            "tick_time exponent": {"tick_time": "1.7e9"},
            "tick_time underscores": {"tick_time": "1_732_550_400.5"},
            "tick_time spaces": {"tick_time": " 1732550400.5"},
            "tick_time lone dot": {"tick_time": "."},
            "tick_time two dots": {"tick_time": "1.2.3"},
            "tick_time other digits": {"tick_time": "\u0661\u0662"},
            "code not a string": {"code": 700},
            "trade_direction a string": {"trade_direction": "buy"},
        }
        for label, change in cases.items():
            with self.subTest(label):
                raw = msgspec.json.encode({"cmd_id": 22998, "data": {**base, **change}})
                exc = malformed(decode_tick, raw)
                assert len(exc.reason) < 300  # a reason, not a dump of the value
                assert wire.decode_batch([raw]).errors[0].frame == raw[:200]

    def test_bad_book_levels_are_malformed(self) -> None:
        for levels in (
            [{"price": 1.05, "volume": ""}],
            [{"volume": "1"}],
            [{"price": "x"}],
            [["1.05", "1"]],
            {},
        ):
            raw = msgspec.json.encode(
                {"cmd_id": 22999, "data": {"code": "EURUSD", "seq": 1, "tick_time": 1, "bids": levels}}
            )
            with self.subTest(levels=levels):
                assert len(wire.decode_batch([raw]).errors) == 1

    def test_odd_inputs_raise_malformed_frame(self) -> None:
        cases: dict[str, object] = {
            "empty bytes": b"",
            "empty str": "",
            "not utf-8": b'{"cmd_id":22998,"data":{"code":"\xff\xfe"}}',
            "a lone surrogate in a str frame": '{"cmd_id":22001,"ret":200,"msg":"\ud800"}',
            "a lone surrogate escape": b'{"cmd_id":22001,"ret":200,"msg":"\\udc00"}',
            "json null": b"null",
            "json number": b"22998",
            "cmd_id as a string": b'{"cmd_id":"22998","data":{}}',
            "no cmd_id and no ret": b'{"data":{}}',
            "trailing garbage": frame("push_trade_int_seq_ms") + b"}",
            "two frames glued": frame("push_trade_int_seq_ms") * 2,
            "deeply nested unknown field": b'{"cmd_id":22998,"x":' + b"[" * 50_000 + b"]" * 50_000 + b"}",
            "deeply nested after a bad field": (
                b'{"cmd_id":22998,"data":5,"x":' + b"[" * 50_000 + b"]" * 50_000 + b"}"
            ),
            "None": None,
            "an int": 10**12,  # bytes(10**12) would be a MemoryError
            "a list": [b"{}"],
        }
        for label, bad in cases.items():
            with self.subTest(label):
                exc = malformed(wire.decode_frame, bad)
                assert len(exc.frame) <= FRAME_EXCERPT_BYTES
                assert exc.reason
                only_malformed(decode_tick, bad)
                assert len(wire.decode_batch([bad]).errors) == 1  # type: ignore[list-item]

    def test_decode_batch_keeps_good_frames_in_order_and_collects_errors(self) -> None:
        sequence = [
            "push_trade_int_seq_ms",
            "malformed_seq_12a",
            "push_book_hk_ten_levels",
            "response_ack_subscribe_trades_22005",
            "malformed_truncated",
            "push_trade_seq_string",
            "push_book_one_side_empty",
            "response_error_606_unsolicited",
            "malformed_array_not_object",
            "push_trade_tick_time_seconds",
        ]
        batch = wire.decode_batch([frame(name) for name in sequence])
        assert batch.ticks == [
            EXPECTED_TICKS["push_trade_int_seq_ms"],
            EXPECTED_TICKS["push_trade_seq_string"],
            EXPECTED_TICKS["push_trade_tick_time_seconds"],
        ]
        assert batch.books == [
            EXPECTED_BOOKS["push_book_hk_ten_levels"],
            EXPECTED_BOOKS["push_book_one_side_empty"],
        ]
        assert batch.responses == [
            EXPECTED_RESPONSES["response_ack_subscribe_trades_22005"],
            EXPECTED_RESPONSES["response_error_606_unsolicited"],
        ]
        assert [exc.frame for exc in batch.errors] == [
            frame("malformed_seq_12a"),
            frame("malformed_truncated"),
            frame("malformed_array_not_object"),
        ]

    def test_the_usual_form_is_tried_first_and_the_batch_says_whether_it_held(self) -> None:
        # Integer seq and tick_time in milliseconds: msgspec checks them while decoding, no second pass.
        usual = [
            frame("push_trade_int_seq_ms"),
            frame("push_book_one_side_empty"),
            frame("response_ack_subscribe_trades_22005"),
        ]
        batch = wire.decode_batch(usual)
        assert batch.usual
        assert batch.ticks == [EXPECTED_TICKS["push_trade_int_seq_ms"]]
        assert batch.books == [EXPECTED_BOOKS["push_book_one_side_empty"]]
        # One trade in another form: the whole batch is decoded the general way, and says so.
        batch = wire.decode_batch([*usual, frame("push_trade_seq_string")])
        assert not batch.usual
        assert batch.ticks == [EXPECTED_TICKS[n] for n in ("push_trade_int_seq_ms", "push_trade_seq_string")]
        assert not wire.decode_batch(usual, usual=False).usual  # not tried: not known to hold

    def test_decode_batch_of_nothing(self) -> None:
        batch = wire.decode_batch([])
        assert (batch.ticks, batch.books, batch.responses, batch.errors) == ([], [], [], [])


# --- PROTOCOL.md "Endpoints": codes -----------------------------------------------------------------


class CodeTests(unittest.TestCase):
    """Codes are case-sensitive, in the vendor's notation, and each belongs to one endpoint."""

    STOCK_CODES = ("AAPL.US", "TSLA.US", "700.HK", "1288.HK", "600519.SH", "000627.SZ")
    FOREX_CRYPTO_CODES = ("EURUSD", "USDJPY", "XAUUSD", "USOIL", "BTCUSDT", "ETHUSDT")

    def test_stock_codes_belong_to_the_stock_endpoint(self) -> None:
        for code in self.STOCK_CODES:
            with self.subTest(code=code):
                assert wire.endpoint_of(code) is wire.Endpoint.STOCK
                assert wire.validate_code(code, wire.Endpoint.STOCK) is wire.Endpoint.STOCK

    def test_forex_and_crypto_codes_belong_to_the_forex_crypto_endpoint(self) -> None:
        for code in self.FOREX_CRYPTO_CODES:
            with self.subTest(code=code):
                assert wire.endpoint_of(code) is wire.Endpoint.FOREX_CRYPTO
                assert wire.validate_code(code, wire.Endpoint.FOREX_CRYPTO) is wire.Endpoint.FOREX_CRYPTO

    def test_endpoint_paths(self) -> None:
        assert wire.Endpoint.STOCK.path == "/quote-stock-b-ws-api"
        assert wire.Endpoint.FOREX_CRYPTO.path == "/quote-b-ws-api"
        assert wire.Endpoint("stock") is wire.Endpoint.STOCK
        assert wire.Endpoint("forex_crypto") is wire.Endpoint.FOREX_CRYPTO

    def test_foreign_notations_are_refused_with_a_hint(self) -> None:
        cases = {
            "NASDAQ:AAPL": "AAPL.US",
            "aapl": "AAPL.US",
            "BTC/USDT": "BTCUSDT",
            "eurusd": "EURUSD",
            "HKEX:0700": "700.HK",
            "600519.SS": "600519.SH",
        }
        for code, hint in cases.items():
            with self.subTest(code=code):
                with pytest.raises(InvalidCode) as info:
                    wire.endpoint_of(code)
                assert (info.value.code, info.value.hint) == (code, hint)
                assert f"did you mean {hint!r}" in str(info.value)
                assert wire.guess_code(code) == hint
                wire.endpoint_of(hint)  # the hint itself is a valid code
                with pytest.raises(InvalidCode):
                    wire.validate_code(code)

    def test_lower_case_is_refused_as_case_sensitive(self) -> None:
        with pytest.raises(InvalidCode, match="case-sensitive"):
            wire.endpoint_of("aapl.us")

    def test_the_empty_code_is_refused(self) -> None:
        with pytest.raises(InvalidCode) as info:
            wire.endpoint_of("")
        assert "empty" in info.value.reason
        assert info.value.hint is None

    def test_a_code_that_is_not_a_string_is_refused(self) -> None:
        for bad in (None, 700, b"AAPL.US", ["AAPL.US"], 1.5):
            with self.subTest(code=bad), pytest.raises(InvalidCode, match="must be a string"):
                wire.endpoint_of(bad)

    def test_a_too_long_code_is_refused(self) -> None:
        long_code = "A" * (wire.MAX_CODE_CHARS + 1)
        with pytest.raises(InvalidCode) as info:
            wire.endpoint_of(long_code)
        assert f"longer than {wire.MAX_CODE_CHARS}" in info.value.reason
        assert len(info.value.code) <= wire.MAX_CODE_CHARS + 3  # the message does not echo it all

    def test_garbage_is_refused_without_a_hint(self) -> None:
        for bad in ("???", "AAPL.XX", " ", "A", "$$.US"):
            with self.subTest(code=bad), pytest.raises(InvalidCode) as info:
                wire.endpoint_of(bad)
            assert info.value.code == bad

    def test_validate_code_with_the_wrong_endpoint_names_the_right_one(self) -> None:
        with pytest.raises(InvalidCode) as info:
            wire.validate_code("EURUSD", wire.Endpoint.STOCK)
        assert "belongs to the forex_crypto endpoint, not stock" in info.value.reason
        with pytest.raises(InvalidCode) as info:
            wire.validate_code("AAPL.US", wire.Endpoint.FOREX_CRYPTO)
        assert "belongs to the stock endpoint, not forex_crypto" in info.value.reason

    def test_validate_code_accepts_the_endpoint_as_its_config_string(self) -> None:
        # Configs name endpoints by value ("stock"); Endpoint is a StrEnum, so the string must do.
        assert wire.validate_code("AAPL.US", "stock") is wire.Endpoint.STOCK  # type: ignore[arg-type]
        with pytest.raises(InvalidCode, match="not forex_crypto"):
            wire.validate_code("AAPL.US", "forex_crypto")  # type: ignore[arg-type]

    def test_validate_code_without_an_endpoint_returns_the_endpoint(self) -> None:
        assert wire.validate_code("700.HK") is wire.Endpoint.STOCK
        assert wire.validate_code("BTCUSDT") is wire.Endpoint.FOREX_CRYPTO


# --- properties --------------------------------------------------------------------------------------

PROPERTY_SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.from_regex(r"-?[0-9]{0,25}(\.[0-9]{0,6})?", fullmatch=True)
)
_json_values = st.recursive(
    _json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
_field_names = st.sampled_from(
    ["code", "seq", "tick_time", "price", "volume", "turnover", "trade_direction", "bids", "asks", "extra"]
)
_level = st.fixed_dictionaries({}, optional={"price": _json_scalars, "volume": _json_scalars})
_data = st.dictionaries(_field_names, _json_values | st.lists(_level, max_size=3), max_size=9)
_frame_like = st.fixed_dictionaries(
    {"cmd_id": st.sampled_from([22998, 22999, 22001, 22003, 22005, 22007, 0, 22011]) | st.integers()},
    optional={
        "data": _data | _json_values,
        "ret": _json_scalars,
        "msg": _json_scalars,
        "seq_id": _json_scalars,
        "trace": _json_scalars,
    },
)
_json_objects = _json_values | _frame_like


def _to_wire(obj: object, as_str: bool) -> bytes | str:  # noqa: FBT001 - a hypothesis-drawn flag
    # json.dumps: it takes any int and any str; ensure_ascii=False keeps lone surrogates raw.
    text = json.dumps(obj, ensure_ascii=not as_str)
    return text if as_str else text.encode("utf-8")


_recorded = sorted(path.stem for path in FRAMES_DIR.glob("*.json"))

# (text, Decimal): the string the vendor sends and the value it stands for. Either any finite
# Decimal as str() writes it ("1E+5", "-0", "0.000123"), or plain digits with many decimals.
_digits = st.text(alphabet="0123456789", min_size=1, max_size=60)
_long_decimals = st.builds(
    lambda sign, whole, fraction: f"{sign}{whole[:30]}.{fraction}",
    st.sampled_from(["", "-"]),
    _digits,
    _digits,
)
_prices = st.decimals(allow_nan=False, allow_infinity=False).map(lambda d: (str(d), d)) | _long_decimals.map(
    lambda s: (s, Decimal(s))
)

# Field values around the fast path's edges: numbers and digit strings of every length up to past
# 2**64, signs, points, exponents, non-ASCII digits.
_int_edges = (
    st.integers(-5, 5)
    | st.integers(0, 2**66)
    | st.sampled_from([wire.SECONDS_BELOW - 1, wire.SECONDS_BELOW, wire.UINT64_MAX, wire.UINT64_MAX + 1])
)
_numbers = (
    _int_edges
    | _int_edges.map(str)
    | st.text(alphabet="0123456789.-+e\u0661 ", max_size=22)
    | st.builds(lambda zeros, n: "0" * zeros + str(n), st.integers(0, 25), st.integers(0, 2**64))
)
_decimal_like = st.text(alphabet="0123456789.-eE+\u0661\u00b2", max_size=12) | _prices.map(lambda p: p[0])


# Values next to the usual ones, one of which in a batch of usual trades must send it trade by trade.
_odd_ints = st.sampled_from(
    [
        "",
        "0",
        "00",
        "05",
        "-1",
        "1.0",
        "1e3",
        " 1",
        "1,2",
        "\u0661",
        "1700000000",
        "1700000000.5",
        str(2**63),
        str(2**64 - 1),
        str(2**64),
        2**63,
        2**64 - 1,
        2**64,
        -1,
        1700000000,
    ]
)
_odd_decimals = st.sampled_from(
    ["1..2", "1.2.3", ".", "", "1.", ".5", "01.5", "1,5", "-1", "1e5", "\u0661", " 1", ",", "1.2,3"]
)


class PropertyTests(unittest.TestCase):
    """Decoding is total (MalformedFrame or a value), exact on prices, and requests round-trip."""

    @PROPERTY_SETTINGS
    @given(raw=st.binary(max_size=300))
    def test_decode_frame_on_arbitrary_bytes_raises_only_malformed_frame(self, raw: bytes) -> None:
        only_malformed(wire.decode_frame, raw)
        only_malformed(decode_tick, raw)

    @PROPERTY_SETTINGS
    @given(
        prefix=st.sampled_from([b'{"cmd_id":22998,"data":', b'{"cmd_id":22999,"data":{"bids":', b'{"ret":']),
        tail=st.binary(max_size=100),
    )
    def test_decode_frame_on_frame_shaped_bytes_raises_only_malformed_frame(
        self, prefix: bytes, tail: bytes
    ) -> None:
        only_malformed(wire.decode_frame, prefix + tail)
        only_malformed(decode_tick, prefix + tail)

    @PROPERTY_SETTINGS
    @given(obj=_json_objects, as_str=st.booleans())
    def test_decode_frame_on_json_objects_raises_only_malformed_frame(
        self,
        obj: object,
        as_str: bool,  # noqa: FBT001 - a hypothesis-drawn flag
    ) -> None:
        raw = _to_wire(obj, as_str)
        only_malformed(wire.decode_frame, raw)
        only_malformed(decode_tick, raw)

    @settings(PROPERTY_SETTINGS, max_examples=100)  # several frames per example
    @given(objs=st.lists(_json_objects, max_size=4), as_str=st.booleans())
    def test_decode_batch_never_raises(
        self,
        objs: list[object],
        as_str: bool,  # noqa: FBT001 - a hypothesis-drawn flag
    ) -> None:
        frames = [_to_wire(obj, as_str) for obj in objs]
        for usual in (True, False):
            batch = wire.decode_batch(frames, usual=usual)
            decoded = (batch.ticks, batch.books, batch.responses, batch.errors)
            assert sum(map(len, decoded)) == len(frames)
            assert all(isinstance(exc, MalformedFrame) for exc in batch.errors)

    @PROPERTY_SETTINGS
    @given(names=st.lists(st.sampled_from(_recorded), max_size=12))
    def test_decode_batch_keeps_recorded_frames_in_order(self, names: list[str]) -> None:
        for usual in (True, False):  # the usual form tried first, or not: the same result
            batch = wire.decode_batch([frame(name) for name in names], usual=usual)
            assert batch.ticks == [EXPECTED_TICKS[n] for n in names if n in EXPECTED_TICKS]
            assert batch.books == [EXPECTED_BOOKS[n] for n in names if n in EXPECTED_BOOKS]
            assert batch.responses == [EXPECTED_RESPONSES[n] for n in names if n in EXPECTED_RESPONSES]
            malformed = [frame(n)[:200] for n in names if n in EXPECTED_MALFORMED]
            assert [e.frame for e in batch.errors] == malformed

    @PROPERTY_SETTINGS
    @given(price=_prices, volume=_prices, turnover=_prices, encoder=st.sampled_from(["msgspec", "json"]))
    def test_decimal_strings_survive_byte_identical(
        self,
        price: tuple[str, Decimal],
        volume: tuple[str, Decimal],
        turnover: tuple[str, Decimal],
        encoder: str,
    ) -> None:
        raw_data = {
            "code": "BTCUSDT",
            "seq": 1,
            "tick_time": 1732550400123,
            "price": price[0],
            "volume": volume[0],
            "turnover": turnover[0],
        }
        obj = {"cmd_id": 22998, "data": raw_data}
        raw = msgspec.json.encode(obj) if encoder == "msgspec" else json.dumps(obj).encode()
        tick = decode_tick(raw)
        assert (tick.price, tick.volume, tick.turnover) == (price[0], volume[0], turnover[0])
        assert tick.decimal_price() == price[1]
        assert tick.decimal_price().as_tuple() == price[1].as_tuple()  # same digits and exponent, too

    @PROPERTY_SETTINGS
    @given(
        seq=st.integers(0, wire.UINT64_MAX),
        tick_time=st.integers(0, wire.SECONDS_BELOW - 1) | st.integers(wire.SECONDS_BELOW, 2**53),
    )
    def test_int_and_numeric_string_forms_decode_equal(self, seq: int, tick_time: int) -> None:
        def tick(seq_form: int | str, time_form: int | str) -> wire.Tick:
            raw = {
                "cmd_id": 22998,
                "data": {"code": "XAUUSD", "seq": seq_form, "tick_time": time_form, "price": "2631.47"},
            }
            return decode_tick(msgspec.json.encode(raw))

        forms = {tick(s, t) for s in (seq, str(seq)) for t in (tick_time, str(tick_time))}
        assert len(forms) == 1
        (only,) = forms
        assert only.seq == seq
        assert only.tick_time == (tick_time * 1000 if tick_time < wire.SECONDS_BELOW else tick_time)

    @settings(PROPERTY_SETTINGS, max_examples=400)
    @given(
        seq=_numbers,
        tick_time=_numbers,
        price=_decimal_like,
        volume=_decimal_like,
        turnover=_decimal_like,
    )
    def test_fast_normalisation_agrees_with_the_checked_one(
        self, seq: int | str, tick_time: int | str, price: str, volume: str, turnover: str
    ) -> None:
        # wire._normalise_trade takes a shortcut for the usual fields; on any input it must give what
        # the field-by-field checks give (the same Tick, or the same MalformedFrame message).
        trade = wire.Trade("XAUUSD", seq, tick_time, price, volume, turnover, 1, 7)

        def outcome(normalise: Callable[..., wire.Tick]) -> object:
            try:
                return normalise(trade, b"raw", 5)
            except MalformedFrame as exc:
                return str(exc)

        assert outcome(wire._normalise_trade) == outcome(wire._checked_trade)
        # And decode_batch's own shortcut, on the frame as it comes off the socket.
        frame = wire.encode(wire.TradePush(data=trade))
        batch = wire.decode_batch([frame], 5)
        try:
            expected: object = wire._checked_trade(trade, frame, 5)
        except MalformedFrame as exc:
            expected = str(exc)
        assert [*batch.ticks, *map(str, batch.errors)] == [expected]

    @settings(PROPERTY_SETTINGS, max_examples=600)
    @given(
        trades=st.lists(
            st.tuples(
                st.integers(0, 10**6) | st.integers(0, 10**6).map(str),
                st.integers(wire.SECONDS_BELOW, 2 * wire.SECONDS_BELOW)
                | st.integers(wire.SECONDS_BELOW, 2 * wire.SECONDS_BELOW).map(str),
                st.sampled_from(["1.5", "20", "0.25"]),
                st.sampled_from(["", "3", "4.5"]),
                st.sampled_from(["", "12.5"]),
            ).map(list)
            | st.tuples(_numbers, _numbers, _decimal_like, _decimal_like, _decimal_like).map(list),
            min_size=1,
            max_size=6,
        ),
        odd=st.none()
        | st.tuples(st.integers(0, 5), st.integers(0, 1), _odd_ints)
        | st.tuples(st.integers(0, 5), st.integers(2, 4), _odd_decimals),
        junk=st.lists(st.integers(0, 6), max_size=2),
    )
    def test_a_batch_decodes_as_its_frames_one_by_one(
        self, trades: list[list[int | str]], odd: tuple[int, int, int | str] | None, junk: list[int]
    ) -> None:
        # decode_batch checks the trades of a batch together (wire._fast_trades) and goes trade by
        # trade when any is unusual: either way each frame gets what the field-by-field checks give,
        # ticks and errors in arrival order. So does it with the usual form tried first or not.
        if odd is not None:  # one odd field in a batch of usual trades
            at, field, value = odd
            trades[min(at, len(trades) - 1)][field] = value
        frames = [
            wire.encode(wire.TradePush(data=wire.Trade("EURUSD", *t, 1, 7)))  # type: ignore[arg-type]
            for t in trades
        ]
        for at in junk:
            frames.insert(min(at, len(frames)), b'{"cmd_id":22998,"data":')
        ticks: list[wire.Tick] = []
        errors: list[str] = []
        for frame in frames:
            try:
                match wire.decode_frame(frame):
                    case wire.TradePush(data=trade):
                        ticks.append(wire._checked_trade(trade, frame, 5))
            except MalformedFrame as exc:
                errors.append(str(exc))
        for usual in (True, False):
            batch = wire.decode_batch(frames, 5, usual=usual)
            assert batch.ticks == ticks
            assert [str(exc) for exc in batch.errors] == errors

    @PROPERTY_SETTINGS
    @given(codes=st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=30))
    def test_subscribe_trades_sends_exactly_the_sorted_set(self, codes: list[str]) -> None:
        request = wire.subscribe_trades(codes, wire.RequestIds("prop"))
        encoded = wire.encode(request)
        decoded = msgspec.json.decode(encoded)
        assert [entry["code"] for entry in decoded["data"]["symbol_list"]] == sorted(set(codes))
        assert msgspec.json.decode(encoded, type=wire.AnyRequest) == request

    @PROPERTY_SETTINGS
    @given(prefix=st.text(max_size=200), start=st.integers(-(2**40), 2**40))
    def test_request_ids_stay_in_range(self, prefix: str, start: int) -> None:
        ids = wire.RequestIds(prefix, start=start)
        for _ in range(3):
            seq_id, trace = ids.next()
            assert 0 <= seq_id <= wire.UINT32_MAX
            assert len(trace) <= wire.TRACE_MAX_CHARS


class SessionAnswerTests(unittest.TestCase):
    """A new socket's first frames: accepted (any 200), refused (401, 606: the server closes), or neither."""

    def test_a_200_answer_accepts_the_session(self) -> None:
        for name in (
            "response_ack_heartbeat_22001",
            "response_ack_subscribe_trades_22005",
            "response_unknown_cmd_id",
        ):
            with self.subTest(frame=name):
                assert wire.session_answer(frame(name)) is True

    def test_401_and_606_refuse_it_with_the_vendor_error(self) -> None:
        refused = wire.session_answer(frame("response_error_401_token_invalid"))
        assert isinstance(refused, VendorError)
        assert (refused.ret, refused.msg) == (401, "token invalid")
        assert "feed.token_env" in str(refused)  # the advice reaches whoever shows it
        too_many = wire.session_answer(frame("response_error_606_unsolicited"))
        assert isinstance(too_many, VendorError)
        assert too_many.ret == 606

    def test_pushes_other_refusals_and_garbage_say_nothing(self) -> None:
        for name in (
            "push_trade_int_seq_ms",
            "push_book_hk_ten_levels",
            "response_refused_600_on_22005",
            "malformed_truncated",
        ):
            with self.subTest(frame=name):
                assert wire.session_answer(frame(name)) is None
