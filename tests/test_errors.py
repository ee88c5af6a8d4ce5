"""Tests of actors.core.errors: messages name their fields, and every exception survives pickling.

Ray ships an exception from an actor to its caller by pickling it, so an exception whose fields do
not survive ``pickle.loads(pickle.dumps(exc))`` loses them at the first actor boundary.
"""

from __future__ import annotations

import pickle

import pytest

from actors.core import errors
from actors.core.errors import (
    FRAME_EXCERPT_BYTES,
    VENDOR_ADVICE,
    ChildFailed,
    ConfigError,
    ConnectFailed,
    ConnectionSilent,
    EscalationError,
    FeedError,
    InvalidCode,
    InvalidTransition,
    MalformedFrame,
    ProtocolViolation,
    QuotaExhausted,
    SubscriptionRefused,
    Unresponsive,
    VendorError,
)

#: One or more instances of every exception class in actors.core.errors.
EXAMPLES: list[FeedError] = [
    FeedError("something tickvisor raised on purpose"),
    VendorError(600, "code invalid", 22005, 7),
    VendorError(401, "token invalid"),
    VendorError(799, "something new", 22004, None),
    ProtocolViolation("a 22998 push before any subscription"),
    MalformedFrame("Input data was truncated", b'{"cmd_id":22998,"data":{"co'),
    MalformedFrame("seq '12a' is not an integer or numeric string", b"x" * 1000),
    MalformedFrame("not utf-8", "é" * 150),
    InvalidCode("aapl", "codes are case-sensitive and upper-case", "AAPL.US"),
    InvalidCode("", "empty code"),
    SubscriptionRefused({"aapl": "codes are case-sensitive", "NASDAQ:TSLA": "not in the vendor's notation"}),
    SubscriptionRefused({}),
    QuotaExhausted({"GOOGL.US": "quota exhausted: plan 'premium' ..."}, "premium", 3, 200, 2),
    InvalidTransition("can't handle SubscribeAck in state idle"),
    ConnectionSilent(31.25, 30.0),
    Unresponsive("connection:stock-0", 2, 1.0),
    ConnectFailed(
        "stock-0",
        "stock",
        "ws://127.0.0.1:9/quote-stock-b-ws-api?token=***",
        "ConnectionRefusedError: [Errno 111] Connect call failed ('127.0.0.1', 9)",
        60.0,
    ),
    ConnectFailed(
        "forex_crypto-1", "forex_crypto", "wss://quote.alltick.co/quote-b-ws-api?token=***", "", 10.0
    ),
    ConfigError("feed.token_env", "the environment variable ALLTICK_TOKEN is not set"),
    ConfigError("", "no configuration file"),
    EscalationError("conn-stock-0", 5, 60.0, "ConnectionSilent: connection silent for 31.00 s"),
    ChildFailed("connection:stock-0", VendorError(401, "token invalid")),
]


def fields(exc: BaseException) -> dict[str, object]:
    """An exception's structured fields (its instance attributes) and args; a nested exception (a
    ChildFailed's cause) by its type and fields, since exceptions do not compare equal.
    """
    return {
        name: (type(value), fields(value)) if isinstance(value, BaseException) else value
        for name, value in {**vars(exc), "args": exc.args}.items()
    }


class HierarchyTests:
    """The tree in the module docstring."""

    def test_every_exception_class_has_an_example(self) -> None:
        classes = {
            value
            for value in vars(errors).values()
            if isinstance(value, type)
            and issubclass(value, BaseException)
            and value.__module__ == errors.__name__
        }
        assert classes == {type(exc) for exc in EXAMPLES}

    def test_the_tree(self) -> None:
        for cls in (
            VendorError,
            ProtocolViolation,
            InvalidCode,
            SubscriptionRefused,
            InvalidTransition,
            ConnectionSilent,
            Unresponsive,
            ConnectFailed,
            ConfigError,
            EscalationError,
            ChildFailed,
        ):
            assert issubclass(cls, FeedError)
        assert issubclass(MalformedFrame, ProtocolViolation)
        assert issubclass(FeedError, Exception)
        # "We broke it" is not "they broke it".
        for ours in (InvalidTransition, InvalidCode, ConfigError):
            assert not issubclass(ours, ProtocolViolation)
            assert not issubclass(ours, VendorError)

    def test_decoding_errors_are_not_builtin_value_errors(self) -> None:
        # A frame-boundary `except MalformedFrame` must not swallow our own bugs, and vice versa.
        assert not issubclass(MalformedFrame, ValueError | KeyError | TypeError)


class MessageTests:
    """Messages are lower-case and built from the fields."""

    def test_vendor_error_names_ret_msg_cmd_id_and_seq_id(self) -> None:
        message = str(VendorError(600, "code invalid", 22005, 7))
        assert message.startswith("600 code invalid for cmd_id 22005 (seq_id 7): ")
        assert message.endswith(VENDOR_ADVICE[600])

    def test_vendor_error_without_cmd_id_or_seq_id(self) -> None:
        assert str(VendorError(401, "token invalid")) == f"401 token invalid: {VENDOR_ADVICE[401]}"
        assert str(VendorError(606, "too many", cmd_id=0)) == (
            f"606 too many for cmd_id 0: {VENDOR_ADVICE[606]}"
        )
        assert str(VendorError(429, "rate limit", seq_id=3)) == (
            f"429 rate limit (seq_id 3): {VENDOR_ADVICE[429]}"
        )

    def test_vendor_error_with_an_unknown_ret_has_no_advice(self) -> None:
        message = str(VendorError(799, "something new", 22004, 9))
        assert message == "799 something new for cmd_id 22004 (seq_id 9)"

    def test_every_documented_refusal_has_advice(self) -> None:
        # PROTOCOL.md "Error codes", everything but 200.
        assert set(VENDOR_ADVICE) == {400, 401, 429, 600, 603, 604, 606}
        for ret, advice in VENDOR_ADVICE.items():
            assert advice
            assert str(VendorError(ret, "m")).endswith(advice)

    def test_vendor_error_keeps_its_fields(self) -> None:
        exc = VendorError(600, "code invalid", 22005, 7)
        assert (exc.ret, exc.msg, exc.cmd_id, exc.seq_id) == (600, "code invalid", 22005, 7)
        assert exc.args == (str(exc),)

    def test_malformed_frame_names_reason_and_frame(self) -> None:
        exc = MalformedFrame("Input data was truncated", b'{"cmd_id":229')
        assert str(exc) == "malformed frame: Input data was truncated; frame b'{\"cmd_id\":229'"
        assert (exc.reason, exc.frame, exc.frame_len) == ("Input data was truncated", b'{"cmd_id":229', 13)

    def test_malformed_frame_keeps_200_bytes_and_says_how_long_the_frame_was(self) -> None:
        raw = b"0123456789" * 100
        exc = MalformedFrame("too long", raw)
        assert exc.frame == raw[:FRAME_EXCERPT_BYTES]
        assert len(exc.frame) == 200
        assert exc.frame_len == 1000
        assert str(exc).endswith("... (1000 bytes)")
        assert "too long" in str(exc)

    def test_malformed_frame_of_exactly_200_bytes_is_not_marked_cut(self) -> None:
        exc = MalformedFrame("r", b"x" * FRAME_EXCERPT_BYTES)
        assert "..." not in str(exc)
        assert exc.frame_len == FRAME_EXCERPT_BYTES

    def test_malformed_frame_takes_str_bytearray_and_memoryview(self) -> None:
        assert MalformedFrame("r", "é").frame == "é".encode()
        assert MalformedFrame("r", "\ud800").frame == b"?"  # a lone surrogate cannot be UTF-8
        assert MalformedFrame("r", bytearray(b"ab")).frame == b"ab"
        assert MalformedFrame("r", memoryview(b"ab")).frame == b"ab"

    def test_malformed_frame_of_something_that_is_not_a_frame_keeps_its_repr(self) -> None:
        assert MalformedFrame("r", None).frame == b"None"
        huge = MalformedFrame("r", 10**12)  # bytes(10**12) would try to allocate a terabyte
        assert huge.frame == b"1000000000000"

    def test_invalid_code_names_code_reason_and_hint(self) -> None:
        exc = InvalidCode("aapl", "codes are case-sensitive and upper-case", "AAPL.US")
        assert str(exc) == (
            "invalid code 'aapl': codes are case-sensitive and upper-case; did you mean 'AAPL.US'?"
        )
        assert str(InvalidCode("", "empty code")) == "invalid code '': empty code"

    def test_subscription_refused_lists_every_code_and_its_reason(self) -> None:
        problems = {
            "aapl": "codes are case-sensitive and upper-case",
            "NASDAQ:TSLA": "not in the vendor's notation",
            "EURUSD": "belongs to the forex_crypto endpoint, not stock",
        }
        message = str(SubscriptionRefused(problems))
        assert message.startswith("subscription refused, nothing changed: ")
        for code, why in problems.items():
            assert f"{code!r}: {why}" in message
        # Sorted by code, so the same problems always read the same.
        assert message.index("'EURUSD'") < message.index("'NASDAQ:TSLA'") < message.index("'aapl'")

    def test_subscription_refused_keeps_its_own_copy(self) -> None:
        problems = {"aapl": "lower-case"}
        exc = SubscriptionRefused(problems)
        problems["x"] = "later"
        assert exc.problems == {"aapl": "lower-case"}

    def test_empty_subscription_refused_says_the_list_is_empty(self) -> None:
        exc = SubscriptionRefused({})
        assert exc.problems == {}
        assert "the code list is empty" in str(exc)

    def test_connection_silent_names_both_durations(self) -> None:
        assert str(ConnectionSilent(31.25, 30.0)) == "connection silent for 31.25 s (deadline 30.00 s)"

    def test_unresponsive_names_the_actor_the_deadline_and_the_misses(self) -> None:
        assert str(Unresponsive("connection:stock-0", 2, 1.0)) == (
            "connection:stock-0 missed the 1 s ping deadline 2 times in a row"
        )

    def test_connect_failed_names_the_endpoint_the_url_and_the_last_error(self) -> None:
        exc = ConnectFailed("stock-0", "stock", "ws://h/p?token=***", "OSError: refused", 60.0)
        assert str(exc) == (
            "connection stock-0 to the stock endpoint (ws://h/p?token=***) did not start within 60 s; "
            "last error: OSError: refused"
        )
        assert "neither answered nor refused" in str(ConnectFailed("stock-0", "stock", "ws://h/p", "", 5.0))

    def test_child_failed_names_the_child_and_keeps_the_cause_to_branch_on(self) -> None:
        exc = ChildFailed("connection:stock-0", VendorError(401, "token invalid"))
        assert str(exc).startswith("connection:stock-0: 401 token invalid: the token is invalid or expired")
        assert isinstance(exc.cause, VendorError)
        assert exc.cause.ret == 401

    def test_config_error_names_the_key(self) -> None:
        assert str(ConfigError("feed.token_env", "not set")) == "config error at feed.token_env: not set"
        assert str(ConfigError("", "no configuration file")) == "config error: no configuration file"

    def test_escalation_error_names_child_count_window_and_cause(self) -> None:
        message = str(EscalationError("conn-stock-0", 5, 60.0, "connection silent"))
        assert message == (
            "conn-stock-0 failed 5 times within 60 s even after a group restart; "
            "last cause: connection silent"
        )

    def test_every_message_starts_lower_case_or_with_a_number(self) -> None:
        for exc in EXAMPLES:
            if type(exc) in (FeedError, ProtocolViolation, InvalidTransition):
                continue  # free-text messages, written by the raiser
            first = str(exc)[0]
            assert first.islower() or first.isdigit() or first == "'", str(exc)


class PickleTests:
    """Ray ships exceptions by pickle: type, fields, args and message survive, on every protocol."""

    def test_every_exception_round_trips(self) -> None:
        for exc in EXAMPLES:
            for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
                copy = pickle.loads(pickle.dumps(exc, protocol=protocol))  # noqa: S301 - our own bytes
                assert type(copy) is type(exc)
                assert fields(copy) == fields(exc)
                assert str(copy) == str(exc)

    def test_malformed_frame_keeps_the_original_length(self) -> None:
        exc = MalformedFrame("r", b"y" * 5000)
        copy = pickle.loads(pickle.dumps(exc))  # noqa: S301 - our own bytes
        assert (copy.frame, copy.frame_len) == (b"y" * 200, 5000)
        assert str(copy).endswith("... (5000 bytes)")

    def test_a_round_tripped_exception_can_be_raised_and_caught_as_its_class(self) -> None:
        for exc in EXAMPLES:
            copy = pickle.loads(pickle.dumps(exc))  # noqa: S301 - our own bytes
            with pytest.raises(type(exc)):
                raise copy
