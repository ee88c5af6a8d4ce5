"""Tests of actors.core.normalise: pushes to Ticks and BookTicks, decode_batch's paths held to one result.

Pure: no Ray, no sockets, no sleeps. Every file in tests/frames/ must have an expectation in tests/recorded.py
(``TestFramesDirectory`` checks that).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sized
from decimal import Decimal
from typing import get_args

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.core import normalise, wire
from actors.core.errors import (
    FRAME_EXCERPT_BYTES,
    MalformedFrame,
)
from tests.recorded import (
    EXPECTED_BOOKS,
    EXPECTED_MALFORMED,
    EXPECTED_RESPONSES,
    EXPECTED_TICKS,
    FRAMES_DIR,
    decode_tick,
    frame,
    malformed,
    only_malformed,
)


class TestFramesDirectory:
    """The recorded frames and the expectations above stay in step."""

    def test_every_frame_file_has_one_expectation(self) -> None:
        on_disk = sorted(path.stem for path in FRAMES_DIR.glob("*.json"))
        tables: list[Mapping[str, object]] = [
            EXPECTED_TICKS,
            EXPECTED_BOOKS,
            EXPECTED_RESPONSES,
            EXPECTED_MALFORMED,
        ]
        expected = sorted(name for table in tables for name in table)
        assert on_disk == expected

    def test_frames_are_single_compact_frames(self) -> None:
        for path in FRAMES_DIR.glob("*.json"):
            raw = path.read_bytes()
            assert raw
            assert not raw.endswith(b"\n")  # as the bytes arrive: no trailing newline


# --- PROTOCOL.md "22998 trade push" and "22999 order-book push" --------------------------------


class TestPushDecode:
    """Pushes decode as sent, then normalise: seq int, tick_time ms, prices the exact strings."""

    def test_every_recorded_trade_decodes_to_its_tick(self) -> None:
        for name, expected in EXPECTED_TICKS.items():
            assert decode_tick(frame(name)) == expected
            batch = normalise.decode_batch([frame(name)])
            assert (batch.ticks, batch.books, batch.responses, batch.errors) == ([expected], [], [], [])

    def test_every_recorded_book_decodes_to_its_book_tick(self) -> None:
        for name, expected in EXPECTED_BOOKS.items():
            batch = normalise.decode_batch([frame(name)])
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
            assert decode_tick(frame(name).decode("utf-8")) == expected

    def test_received_ns_is_carried_through(self) -> None:
        assert decode_tick(frame("push_trade_int_seq_ms"), received_ns=123).received_ns == 123
        batch = normalise.decode_batch(
            [frame("push_trade_int_seq_ms"), frame("push_book_one_side_empty")], 456
        )
        assert batch.ticks[0].received_ns == batch.books[0].received_ns == 456

    def test_a_batch_is_sound_when_every_price_is_above_zero_and_no_volume_negative(self) -> None:
        def push(price: str, volume: str = "10", seq: int | str = 1) -> bytes:
            data = {
                "code": "EURUSD",
                "seq": seq,
                "tick_time": 1732550400123,
                "price": price,
                "volume": volume,
            }
            return msgspec.json.encode({"cmd_id": 22998, "data": data})

        sound = {
            ("189.23", "0.5", "10.", "100"): True,
            ("189.23", "0"): False,
            ("0.000", "1"): False,
            ("00.0",): False,
            (".0",): False,
        }
        for prices, want in sound.items():
            for seq in (1, "1"):  # the usual form and the general path alike
                batch = normalise.decode_batch([push(p, seq=seq) for p in prices])
                assert batch.sound is want, (prices, seq)
                assert len(batch.ticks) == len(prices)
        for price, volume in (("-1", "10"), ("1e3", "10"), ("1.5", "-1")):  # unusual: checked tick by tick
            assert normalise.decode_batch([push(price, volume)]).sound is False

    def test_tick_time_seconds_become_milliseconds(self) -> None:
        def tick_time(value: object) -> int:
            raw = {"cmd_id": 22998, "data": {"code": "EURUSD", "seq": 1, "tick_time": value, "price": "1"}}
            return decode_tick(msgspec.json.encode(raw)).tick_time

        below = normalise.SECONDS_BELOW
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
        assert decode_tick(raw) == normalise.Tick("EURUSD", 1, 1732550400123, "1.05", "", "", 0)

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
        assert precise.decimal_price() != Decimal(0.3)  # not via float  # noqa: RUF032 - the float is the point: the price must not go through one

    def test_book_levels_are_best_first_and_one_side_may_be_empty(self) -> None:
        (book,) = normalise.decode_batch([frame("push_book_one_side_empty")]).books
        assert book.asks == ()
        assert [Decimal(price) for price, _ in book.bids] == sorted(
            (Decimal(price) for price, _ in book.bids), reverse=True
        )
        (hk,) = normalise.decode_batch([frame("push_book_hk_ten_levels")]).books
        assert len(hk.bids) == len(hk.asks) == 10
        assert Decimal(hk.bids[0][0]) < Decimal(hk.asks[0][0])

    def test_only_pushes_become_ticks_and_books(self) -> None:
        # Dispatch is a match on the tagged Struct: acks, errors and unlisted responses go to responses.
        for name in (
            "response_ack_subscribe_trades_22005",
            "response_error_401_token_invalid",
            "response_unknown_cmd_id",
        ):
            batch = normalise.decode_batch([frame(name)])
            assert (batch.ticks, batch.books, batch.errors, len(batch.responses)) == ([], [], [], 1)


# --- frames PROTOCOL.md does not allow ------------------------------------------------------------


class TestMalformed:
    """Bad input raises MalformedFrame and nothing else; decode_batch never raises."""

    def test_every_recorded_malformed_frame_raises_malformed_frame(self) -> None:
        for name, fragment in EXPECTED_MALFORMED.items():
            raw = frame(name)
            exc = malformed(decode_tick, raw)
            assert fragment in exc.reason
            assert exc.frame == raw[:FRAME_EXCERPT_BYTES]
            assert exc.frame_len == len(raw)
            assert exc.reason in str(exc)

    def test_decode_batch_collects_every_recorded_malformed_frame(self) -> None:
        names = list(EXPECTED_MALFORMED)
        batch = normalise.decode_batch([frame(name) for name in names])
        assert (batch.ticks, batch.books, batch.responses) == ([], [], [])
        assert [exc.frame for exc in batch.errors] == [frame(name)[:FRAME_EXCERPT_BYTES] for name in names]

    def test_structural_errors_are_caught_by_decode_frame_itself(self) -> None:
        for name in (
            "malformed_truncated",
            "malformed_price_number",
            "malformed_missing_code",
            "malformed_array_not_object",
        ):
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
        cases: dict[str, dict[str, object]] = {
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
            raw = msgspec.json.encode({"cmd_id": 22998, "data": {**base, **change}})
            exc = malformed(decode_tick, raw)
            assert len(exc.reason) < 300, label  # a reason, not a dump of the value
            assert normalise.decode_batch([raw]).errors[0].frame == raw[:200]

    def test_bad_book_levels_are_malformed(self) -> None:
        levels: object
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
            assert len(normalise.decode_batch([raw]).errors) == 1

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
            exc = malformed(wire.decode_frame, bad)
            assert len(exc.frame) <= FRAME_EXCERPT_BYTES, label
            assert exc.reason
            only_malformed(decode_tick, bad)
            assert len(normalise.decode_batch([bad]).errors) == 1  # type: ignore[list-item]

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
        batch = normalise.decode_batch([frame(name) for name in sequence])
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
        batch = normalise.decode_batch(usual)
        assert batch.usual
        assert batch.ticks == [EXPECTED_TICKS["push_trade_int_seq_ms"]]
        assert batch.books == [EXPECTED_BOOKS["push_book_one_side_empty"]]
        # One trade in another form: the whole batch is decoded the general way, and says so.
        batch = normalise.decode_batch([*usual, frame("push_trade_seq_string")])
        assert not batch.usual
        assert batch.ticks == [EXPECTED_TICKS[n] for n in ("push_trade_int_seq_ms", "push_trade_seq_string")]
        assert not normalise.decode_batch(usual, usual=False).usual  # not tried: not known to hold

    def test_the_usual_frames_are_the_inbound_frames_with_the_usual_trade_push(self) -> None:
        # normalise writes the usual union out; it must follow wire.InboundFrame member for member.
        swapped = [
            normalise._UsualTradePush if member is wire.TradePush else member
            for member in get_args(wire.InboundFrame)
        ]
        assert list(get_args(normalise._UsualFrame)) == swapped

    def test_decode_batch_of_nothing(self) -> None:
        batch = normalise.decode_batch([])
        assert (batch.ticks, batch.books, batch.responses, batch.errors) == ([], [], [], [])


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


def _to_wire(obj: object, as_str: bool) -> bytes | str:
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
    | st.sampled_from(
        [normalise.SECONDS_BELOW - 1, normalise.SECONDS_BELOW, normalise.UINT64_MAX, normalise.UINT64_MAX + 1]
    )
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


class TestProperty:
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
        as_str: bool,
    ) -> None:
        raw = _to_wire(obj, as_str)
        only_malformed(wire.decode_frame, raw)
        only_malformed(decode_tick, raw)

    @settings(PROPERTY_SETTINGS, max_examples=100)  # several frames per example
    @given(objs=st.lists(_json_objects, max_size=4), as_str=st.booleans())
    def test_decode_batch_never_raises(
        self,
        objs: list[object],
        as_str: bool,
    ) -> None:
        frames = [_to_wire(obj, as_str) for obj in objs]
        for usual in (True, False):
            batch = normalise.decode_batch(frames, usual=usual)
            decoded: tuple[Sized, ...] = (batch.ticks, batch.books, batch.responses, batch.errors)
            assert sum(map(len, decoded)) == len(frames)
            assert all(isinstance(exc, MalformedFrame) for exc in batch.errors)

    @PROPERTY_SETTINGS
    @given(names=st.lists(st.sampled_from(_recorded), max_size=12))
    def test_decode_batch_keeps_recorded_frames_in_order(self, names: list[str]) -> None:
        for usual in (True, False):  # the usual form tried first, or not: the same result
            batch = normalise.decode_batch([frame(name) for name in names], usual=usual)
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
        seq=st.integers(0, normalise.UINT64_MAX),
        tick_time=st.integers(0, normalise.SECONDS_BELOW - 1) | st.integers(normalise.SECONDS_BELOW, 2**53),
    )
    def test_int_and_numeric_string_forms_decode_equal(self, seq: int, tick_time: int) -> None:
        def tick(seq_form: int | str, time_form: int | str) -> normalise.Tick:
            raw = {
                "cmd_id": 22998,
                "data": {"code": "XAUUSD", "seq": seq_form, "tick_time": time_form, "price": "2631.47"},
            }
            return decode_tick(msgspec.json.encode(raw))

        forms = {tick(s, t) for s in (seq, str(seq)) for t in (tick_time, str(tick_time))}
        assert len(forms) == 1
        (only,) = forms
        assert only.seq == seq
        assert only.tick_time == (tick_time * 1000 if tick_time < normalise.SECONDS_BELOW else tick_time)

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
        # normalise._normalise_trade takes a shortcut for the usual fields; on any input it must give what
        # the field-by-field checks give (the same Tick, or the same MalformedFrame message).
        trade = wire.Trade("XAUUSD", seq, tick_time, price, volume, turnover, 1, 7)

        def outcome(normalise: Callable[..., normalise.Tick]) -> object:
            try:
                return normalise(trade, b"raw", 5)
            except MalformedFrame as exc:
                return str(exc)

        assert outcome(normalise._normalise_trade) == outcome(normalise._checked_trade)
        # And decode_batch's own shortcut, on the frame as it comes off the socket.
        frame = msgspec.json.encode(wire.TradePush(data=trade))  # a push: wire.encode takes requests
        batch = normalise.decode_batch([frame], 5)
        try:
            expected: object = normalise._checked_trade(trade, frame, 5)
        except MalformedFrame as exc:
            expected = str(exc)
        assert [*batch.ticks, *map(str, batch.errors)] == [expected]

    @settings(PROPERTY_SETTINGS, max_examples=600)
    @given(
        trades=st.lists(
            st.tuples(
                st.integers(0, 10**6) | st.integers(0, 10**6).map(str),
                st.integers(normalise.SECONDS_BELOW, 2 * normalise.SECONDS_BELOW)
                | st.integers(normalise.SECONDS_BELOW, 2 * normalise.SECONDS_BELOW).map(str),
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
        # decode_batch checks the trades of a batch together (normalise._fast_trades) and goes trade by
        # trade when any is unusual: either way each frame gets what the field-by-field checks give,
        # ticks and errors in arrival order. So does it with the usual form tried first or not.
        if odd is not None:  # one odd field in a batch of usual trades
            at, field, value = odd
            trades[min(at, len(trades) - 1)][field] = value
        frames = [
            # t is seq, tick_time (int | str), price, volume, turnover (str, or odd on purpose): a list of
            # mixed fields that mypy can neither count nor match to Trade's parameters.
            msgspec.json.encode(wire.TradePush(data=wire.Trade("EURUSD", *t, 1, 7)))  # type: ignore[arg-type, call-arg]
            for t in trades
        ]
        for at in junk:
            frames.insert(min(at, len(frames)), b'{"cmd_id":22998,"data":')
        ticks: list[normalise.Tick] = []
        errors: list[str] = []
        for raw in frames:
            try:
                match wire.decode_frame(raw):
                    case wire.TradePush(data=trade):
                        ticks.append(normalise._checked_trade(trade, raw, 5))
            except MalformedFrame as exc:
                errors.append(str(exc))
        for usual in (True, False):
            batch = normalise.decode_batch(frames, 5, usual=usual)
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
