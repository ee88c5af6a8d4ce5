"""Tests of actors.core.wire: the frames, one class per PROTOCOL.md topic. No Ray, no sockets, no sleeps."""

from __future__ import annotations

import json
from collections.abc import Iterable

import msgspec
import pytest

from actors.core import normalise, wire
from actors.core.errors import (
    SubscriptionRefused,
    VendorError,
)
from tests.recorded import (
    EXPECTED_RESPONSES,
    frame,
    malformed,
)

# --- PROTOCOL.md "Frame envelope" ----------------------------------------------------------------


class TestEnvelope:
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
        requests: list[wire.AnyRequest] = [
            wire.heartbeat(ids),
            wire.subscribe_book(["EURUSD"], ids, depth_level=1),
            wire.subscribe_trades(["EURUSD"], ids),
            wire.cancel(wire.CANCEL_ALL, ids),
        ]
        for request in requests:
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
            assert decode(wire.encode(request)) == request

    def test_trace_stays_within_64_chars_with_a_long_prefix(self) -> None:
        for prefix in ("p" * 53, "p" * 54, "x" * 500, "é" * 100):
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


class TestOverwrite:
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
            assert _codes_sent(wire.subscribe_trades(codes, ids)) == ["A.US", "B.US"]
        assert _codes_sent(wire.subscribe_trades((c for c in ("B.US", "A.US")), ids)) == ["A.US", "B.US"]

    def test_empty_set_is_refused_before_encoding(self) -> None:
        # PROTOCOL.md, our reading: an empty symbol_list is a bad request; the client never sends one.
        ids = wire.RequestIds("c", start=1)
        codes: Iterable[str]
        for make in (wire.subscribe_trades, wire.subscribe_book):
            for codes in ([], set(), iter(())):
                with pytest.raises(SubscriptionRefused) as info:
                    make(codes, ids)
                assert info.value.problems == {}
                assert "empty" in str(info.value)
        # Nothing was encoded: no seq_id was spent.
        assert ids.next()[0] == 1

    def test_a_bare_string_is_not_a_set_of_its_characters(self) -> None:
        ids = wire.RequestIds("c", start=1)
        for make in (wire.subscribe_trades, wire.subscribe_book):
            with pytest.raises(TypeError, match=r"AAPL\.US"):
                make("AAPL.US", ids)
        assert ids.next()[0] == 1

    def test_cancel_types(self) -> None:
        ids = wire.RequestIds("c")
        for cancel_type in (wire.CANCEL_ALL, wire.CANCEL_BOOK, wire.CANCEL_TRADES):
            encoded = json.loads(wire.encode(wire.cancel(cancel_type, ids)))
            assert encoded["cmd_id"] == 22006
            assert encoded["data"] == {"cancel_type": cancel_type}
        assert (wire.CANCEL_ALL, wire.CANCEL_BOOK, wire.CANCEL_TRADES) == (0, 1, 2)

    def test_a_bad_cancel_type_raises_and_spends_no_seq_id(self) -> None:
        ids = wire.RequestIds("c", start=1)
        # True == 1 and 1.0 == 1, but they would go on the wire as `true` and `1.0`.
        for bad in (3, -1, 22006, True, 1.0, "2", None):
            with pytest.raises(ValueError, match="cancel_type"):
                wire.cancel(bad, ids)  # type: ignore[arg-type]
        assert ids.next()[0] == 1


# --- PROTOCOL.md "Frame envelope" (responses) and "Error codes" -----------------------------------


class TestResponse:
    """Responses echo seq_id/trace and carry ret/msg; errors the server sends alone carry cmd_id 0."""

    def test_every_recorded_response_decodes(self) -> None:
        for name, expected in EXPECTED_RESPONSES.items():
            decoded = wire.decode_frame(frame(name))
            assert type(decoded) is type(expected)
            assert decoded == expected
            batch = normalise.decode_batch([frame(name)])
            assert (batch.ticks, batch.books, batch.responses, batch.errors) == ([], [], [expected], [])

    def test_acks_carry_their_cmd_id_and_echo_seq_id_and_trace(self) -> None:
        cases = {
            "response_ack_heartbeat_22001": (22001, 41, "stock-0-1-41"),
            "response_ack_subscribe_book_22003": (22003, 42, "stock-0-1-42"),
            "response_ack_subscribe_trades_22005": (22005, 43, "stock-0-1-43"),
            "response_ack_cancel_22007": (22007, 44, "stock-0-1-44"),
        }
        for name, (cmd_id, seq_id, trace) in cases.items():
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
            assert wire.decode_frame(msgspec.json.encode(raw)).cmd_id == ack_cmd, request_cmd

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
            error = wire.decode_frame(frame(name))
            assert isinstance(error, wire.ErrorFrame)
            assert (error.cmd_id, error.ret, error.ok) == (0, ret, False)
        token = wire.decode_frame(frame("response_error_401_token_invalid"))
        assert isinstance(token, wire.ErrorFrame)
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


class TestSessionAnswer:
    """A new socket's first frames: accepted (any 200), refused (401, 606: the server closes), or neither."""

    def test_a_200_answer_accepts_the_session(self) -> None:
        for name in (
            "response_ack_heartbeat_22001",
            "response_ack_subscribe_trades_22005",
            "response_unknown_cmd_id",
        ):
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
            assert wire.session_answer(frame(name)) is None
