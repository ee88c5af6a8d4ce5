"""Tests of actors.core.subscriptions: the subscription state of one connection.

Pure: no Ray, no sockets, no sleeps.

Time is a plain float the test passes in. The server is ``FakeServer``, a pure function of the request:
600 (or 604) when the request names a bad code, else 200 and the connection's set is REPLACED
(PROTOCOL.md "Overwrite semantics"). Requests are checked as they would go on the wire
(``wire.encode`` decoded back with msgspec.json); responses are built as JSON bytes and decoded with
``wire.decode_frame``, as the connection would.

Plain pytest classes, one per topic (pyproject's ``python_classes`` collects ``*Tests``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.core import wire
from actors.core.plans import SUBSCRIBE_GAP_PER_CONNECTION_S, SUBSCRIBE_GAP_PER_TOKEN_S
from actors.core.subscriptions import Acknowledged, Kind, Quarantined, RateGate, Refused, SubscriptionBook

# Codes named after their letter, so that sorted order is alphabetical order: A < B < ... < H.
A, B, C, D, E, F, G, H = "AUDUSD", "BTCUSDT", "CADJPY", "DOGEUSDT", "EURUSD", "FILUSDT", "GBPUSD", "HKDCNH"
ALL8 = frozenset({A, B, C, D, E, F, G, H})

CONN_GAP = 1.0
TOKEN_GAP = 3.0
RETRY_AFTER = 2.0
BACKOFF = 10.0
TIMEOUT = 5.0

MSG = {
    200: "ok",
    400: "request data param invalid",
    401: "token invalid",
    429: "rate limit",
    600: "code invalid",
    603: "token level not enough",
    604: "code unauthorized",
}

PROPERTY = settings(max_examples=200, deadline=None)
#: Strategies built once: building them per example costs more than the test itself.
CODES12 = st.frozensets(st.sampled_from(sorted(ALL8 | {"XAUUSD", "XAGUSD", "USOIL", "ETHUSDT"})))
#: A random universe of codes, each (bad, held before, wanted).
UNIVERSE = st.dictionaries(
    st.text("ABCDEFGHXYZ", min_size=3, max_size=6),
    st.tuples(st.booleans(), st.booleans(), st.booleans()),
    min_size=1,
    max_size=16,
)
RATE_STEP = st.tuples(
    st.sampled_from([0.0, 0.125, 0.5, 1.0, 2.875, 3.0, 6.0]),
    st.integers(0, 2),  # exact in binary
    st.sampled_from(["want", "answer", "refuse", "reconnect", "nothing"]),
    st.frozensets(st.sampled_from(sorted(ALL8)), max_size=4),
)


# --- helpers --------------------------------------------------------------------------------------


def gate() -> RateGate:
    return RateGate(conn_gap_s=CONN_GAP, token_gap_s=TOKEN_GAP)


def make_book(
    kind: Kind = Kind.TRADES,
    *,
    conn: str = "c1",
    rate: RateGate | None = None,
    depth_level: int | None = None,
    up: bool = True,
) -> SubscriptionBook:
    book = SubscriptionBook(
        conn,
        kind,
        gate=rate if rate is not None else gate(),
        retry_after_s=RETRY_AFTER,
        refused_backoff_s=BACKOFF,
        request_timeout_s=TIMEOUT,
        depth_level=depth_level,
    )
    if up:
        book.connection_up()
    return book


def on_wire(request: wire.AnyRequest) -> dict[str, Any]:
    """The request as the server reads it."""
    return msgspec.json.decode(wire.encode(request))


def codes_of(request: wire.AnyRequest) -> frozenset[str]:
    body = on_wire(request)
    return frozenset(s["code"] for s in body["data"].get("symbol_list", []))


def trades_body(seq_id: int, codes: Iterable[str], prefix: str = "t") -> dict[str, Any]:
    """What a 22004 must look like on the wire: the whole set, sorted, no duplicates."""
    return {
        "cmd_id": 22004,
        "seq_id": seq_id,
        "trace": f"{prefix}-{seq_id}",
        "data": {"symbol_list": [{"code": c} for c in sorted(set(codes))]},
    }


def cancel_body(seq_id: int, cancel_type: int, prefix: str = "t") -> dict[str, Any]:
    return {
        "cmd_id": 22006,
        "seq_id": seq_id,
        "trace": f"{prefix}-{seq_id}",
        "data": {"cancel_type": cancel_type},
    }


def reply(
    request: wire.AnyRequest,
    ret: int = 200,
    *,
    cmd_id: int | None = None,
    seq_id: int | None = None,
    msg: str | None = None,
) -> Any:
    """The server's answer to ``request``, decoded as the connection decodes it."""
    body = on_wire(request)
    frame = {
        "ret": ret,
        "msg": MSG.get(ret, "error") if msg is None else msg,
        "cmd_id": wire.ACK_OF[body["cmd_id"]] if cmd_id is None else cmd_id,
        "seq_id": body["seq_id"] if seq_id is None else seq_id,
        "trace": body["trace"],
        "data": {},
    }
    return wire.decode_frame(msgspec.json.encode(frame))


def state(book: SubscriptionBook) -> dict[str, Any]:
    """The whole observable state of a book."""
    return {
        "desired": sorted(book.desired),
        "acknowledged": sorted(book.acknowledged),
        "target": sorted(book.target),
        "quarantined": {c: (q.ret, q.msg) for c, q in sorted(book.quarantined.items())},
        "stats": msgspec.structs.asdict(book.statistics()),
    }


def expect(
    desired: Iterable[str],
    acknowledged: Iterable[str],
    *,
    quarantined: dict[str, tuple[int, str]] | None = None,
    in_flight: bool = False,
    sent: int = 0,
    refusals: int = 0,
) -> dict[str, Any]:
    quarantined = quarantined or {}
    target = set(desired) - quarantined.keys()
    return {
        "desired": sorted(desired),
        "acknowledged": sorted(acknowledged),
        "target": sorted(target),
        "quarantined": dict(sorted(quarantined.items())),
        "stats": {
            "desired": len(set(desired)),
            "acknowledged": len(set(acknowledged)),
            "in_flight": in_flight,
            "requests_sent": sent,
            "refusals": refusals,
            "quarantined": len(quarantined),
            "in_sync": not in_flight and set(acknowledged) == target,
        },
    }


class FakeServer:
    """One connection's server side, pure: refuses (``ret``) a request naming a bad code, else 200.

    A 200 REPLACES ``held`` (PROTOCOL.md "Overwrite semantics"); a refusal leaves it in force (our
    reading of 600). It also checks the per-connection rate and that no request has an empty list.
    """

    def __init__(self, bad: Iterable[str] = (), ret: int = 600) -> None:
        self.bad = frozenset(bad)
        self.ret = ret
        self.held: frozenset[str] = frozenset()
        self.log: list[tuple[float, int, frozenset[str], int]] = []  # (now, cmd_id, codes, ret)

    def answer(self, request: wire.AnyRequest, now: float) -> Any:
        body = on_wire(request)
        if self.log:
            assert now - self.log[-1][0] >= CONN_GAP, f"two requests {now - self.log[-1][0]:.3f} s apart"
        codes = codes_of(request)
        if body["cmd_id"] == 22006:
            ret = 200
            self.held = frozenset()
        else:
            assert codes, "an empty symbol_list is a bad request"
            ret = self.ret if codes & self.bad else 200
            if ret == 200:
                self.held = codes
        self.log.append((now, body["cmd_id"], codes, ret))
        return reply(request, ret)


Hook = Callable[[int, SubscriptionBook], None]


def run(
    book: SubscriptionBook,
    server: FakeServer,
    ids: wire.RequestIds,
    *,
    now: float = 0.0,
    keep: frozenset[str] = frozenset(),
    hook: Hook | None = None,
    limit: int = 200,
) -> tuple[list[wire.AnyRequest], float]:
    """Send what the book asks, when ``next_wakeup`` says, and feed the answers back until in sync.

    Checked at every step: a wakeup always yields a request; every request keeps the acknowledged codes
    that are still wanted (a refusal must leave them in force); the book's acknowledged set is the
    server's; the codes of ``keep`` still wanted are never lost; no good code is ever quarantined.
    ``hook(n, book)`` runs after the n-th request is sent, before it is answered (a strategy acting
    during the bisection).
    """
    requests: list[wire.AnyRequest] = []
    while not book.in_sync:
        assert len(requests) < limit, f"not in sync after {limit} requests: {state(book)}"
        wake = book.next_wakeup(now)
        assert wake is not None, f"out of sync yet no wakeup: {state(book)}"
        assert wake >= now
        now = wake
        kept = book.acknowledged & book.target
        request = book.request_to_send(now, ids)
        assert request is not None, f"next_wakeup said {now} but nothing was sent: {state(book)}"
        assert kept <= codes_of(request), (
            f"request {sorted(codes_of(request))} drops acknowledged {sorted(kept)}"
        )
        requests.append(request)
        if hook is not None:
            hook(len(requests), book)
        response = server.answer(request, now)
        now += 0.25
        assert book.receive_response(response, now)
        assert book.acknowledged == server.held
        assert keep & book.target <= book.acknowledged, f"lost {sorted(keep - book.acknowledged)}"
        assert not (book.quarantined.keys() - server.bad), (
            f"good code quarantined: {sorted(book.quarantined)}"
        )
    assert book.next_wakeup(now) is None
    assert book.request_to_send(now + 100.0, ids) is None
    return requests, now


def synced(
    codes: Iterable[str], *, rate: RateGate | None = None
) -> tuple[SubscriptionBook, wire.RequestIds, float]:
    """A book whose connection holds ``codes`` (acknowledged); events drained."""
    book, ids = make_book(rate=rate), wire.RequestIds("t")
    book.want(codes)
    _, now = run(book, FakeServer(), ids)
    book.events()
    return book, ids, now


def bisection_bound(n: int) -> int:
    """The brief's bound for one bad code among ``n`` wanted codes."""
    return 2 * math.ceil(math.log2(max(n, 2))) + 2


# --- tests ----------------------------------------------------------------------------------------


class OverwriteTests:
    """PROTOCOL.md "Overwrite semantics": every 22004/22002 replaces the whole set; 22006 drops it."""

    def test_first_request_is_the_whole_sorted_set(self) -> None:
        book, ids = make_book(), wire.RequestIds("t")
        book.want([C, A, B, A])
        request = book.request_to_send(0.0, ids)
        assert request is not None
        assert on_wire(request) == trades_body(1, [A, B, C])
        assert wire.encode(request) == wire.encode(wire.subscribe_trades([A, B, C], wire.RequestIds("t")))
        assert state(book) == expect([A, B, C], [], in_flight=True, sent=1)
        assert book.events() == []

    def test_200_makes_acknowledged_the_target(self) -> None:
        book, ids = make_book(), wire.RequestIds("t")
        book.want({A, B, C})
        request = book.request_to_send(0.0, ids)
        assert request is not None
        assert book.receive_response(reply(request), 0.4)
        assert state(book) == expect([A, B, C], [A, B, C], sent=1)
        assert book.in_sync
        assert book.acknowledged == book.target
        assert book.events() == [Acknowledged(frozenset({A, B, C}), 0.0, 0.4)]
        assert book.events() == [], "events are handed out once"
        assert book.request_to_send(10.0, ids) is None, "in sync: nothing to send"
        assert book.next_wakeup(10.0) is None

    def test_a_change_sends_the_whole_new_set_never_an_increment(self) -> None:
        book, ids, _ = synced({A, B, C})
        book.want({B, C, E})
        assert state(book) == expect([B, C, E], [A, B, C], sent=1)
        request = book.request_to_send(1.0, ids)
        assert request is not None
        assert on_wire(request) == trades_body(2, [B, C, E])
        assert state(book) == expect([B, C, E], [A, B, C], in_flight=True, sent=2), (
            "acknowledged changes on the answer, not on send"
        )
        assert book.receive_response(reply(request), 1.3)
        assert state(book) == expect([B, C, E], [B, C, E], sent=2)
        assert book.events() == [Acknowledged(frozenset({B, C, E}), 1.0, 1.3)]
        # Adding one code: the request still names all of them.
        book.want({B, C, E, F})
        request = book.request_to_send(2.0, ids)
        assert request is not None
        assert on_wire(request) == trades_body(3, [B, C, E, F])

    def test_empty_set_sends_cancel_trades(self) -> None:
        book, ids, _ = synced({A, B})
        book.want(set())
        request = book.request_to_send(1.0, ids)
        assert request is not None
        assert on_wire(request) == cancel_body(2, wire.CANCEL_TRADES)
        assert state(book) == expect([], [A, B], in_flight=True, sent=2)
        assert book.receive_response(reply(request), 1.2)  # a 22007
        assert state(book) == expect([], [], sent=2)
        assert book.events() == [Acknowledged(frozenset(), 1.0, 1.2)]

    def test_order_book_kind_sends_22002_and_cancel_type_1(self) -> None:
        book, ids = make_book(Kind.BOOK, depth_level=5), wire.RequestIds("t")
        book.want({B, A})
        request = book.request_to_send(0.0, ids)
        assert request is not None
        assert on_wire(request) == {
            "cmd_id": 22002,
            "seq_id": 1,
            "trace": "t-1",
            "data": {"symbol_list": [{"code": A, "depth_level": 5}, {"code": B, "depth_level": 5}]},
        }
        assert not book.receive_response(reply(request, cmd_id=22005), 0.1), (
            "a 22005 answers trades, not this"
        )
        assert book.receive_response(reply(request), 0.1)  # 22003
        assert state(book) == expect([A, B], [A, B], sent=1)
        book.want([])
        request = book.request_to_send(1.0, ids)
        assert request is not None
        assert on_wire(request) == cancel_body(2, wire.CANCEL_BOOK)
        assert book.receive_response(reply(request), 1.1)
        assert state(book) == expect([], [], sent=2)

    def test_order_book_without_depth_level_omits_it(self) -> None:
        book, ids = make_book(Kind.BOOK), wire.RequestIds("t")
        book.want({A})
        request = book.request_to_send(0.0, ids)
        assert request is not None
        assert on_wire(request)["data"] == {"symbol_list": [{"code": A}]}

    def test_empty_desire_on_a_fresh_connection_sends_nothing(self) -> None:
        book, ids = make_book(), wire.RequestIds("t")
        book.want([])
        assert book.request_to_send(0.0, ids) is None, "neither an empty 22004 nor a needless 22006"
        assert book.next_wakeup(0.0) is None
        assert state(book) == expect([], [])

    def test_nothing_sent_while_disconnected(self) -> None:
        book, ids = make_book(up=False), wire.RequestIds("t")
        book.want({A, B})
        for now in (0.0, 1.0, 100.0):
            assert book.request_to_send(now, ids) is None
            assert book.next_wakeup(now) is None
        assert state(book) == expect([A, B], [])
        book.connection_up()
        book.connection_down()
        assert book.request_to_send(200.0, ids) is None
        assert state(book) == expect([A, B], [])

    def test_nothing_sent_while_a_request_is_in_flight(self) -> None:
        book, ids = make_book(), wire.RequestIds("t")
        book.want({A})
        first = book.request_to_send(0.0, ids)
        assert first is not None
        book.want({A, B})
        for now in (1.0, 2.0, 4.99):
            assert book.request_to_send(now, ids) is None, now
        assert book.next_wakeup(1.0) == TIMEOUT
        assert book.receive_response(reply(first), 4.99)
        assert state(book) == expect([A, B], [A], sent=1)
        second = book.request_to_send(4.99, ids)
        assert second is not None
        assert on_wire(second) == trades_body(2, [A, B])

    def test_only_the_matching_answer_changes_acknowledged(self) -> None:
        book, ids = make_book(), wire.RequestIds("t")
        book.want({A, B})
        assert not book.receive_response(reply(wire.subscribe_trades([A], wire.RequestIds("t"))), 0.0), (
            "nothing in flight"
        )
        request = book.request_to_send(0.0, ids)
        assert request is not None
        before = state(book)
        strays = {
            "another seq_id": reply(request, seq_id=request.seq_id + 1),
            "an older seq_id, refused": reply(request, 600, seq_id=request.seq_id - 1),
            "a heartbeat ack with the same seq_id": reply(request, cmd_id=wire.CMD_HEARTBEAT_ACK),
            "a refused heartbeat with the same seq_id": reply(request, 400, cmd_id=wire.CMD_HEARTBEAT_ACK),
            "an order-book ack with the same seq_id": reply(request, cmd_id=wire.CMD_SUBSCRIBE_BOOK_ACK),
            "a cancel ack with the same seq_id": reply(request, cmd_id=wire.CMD_CANCEL_ACK),
        }
        for response in strays.values():
            assert not book.receive_response(response, 0.5)
            assert state(book) == before
        assert book.events() == []
        assert book.receive_response(reply(request), 0.6)
        assert state(book) == expect([A, B], [A, B], sent=1)
        assert not book.receive_response(reply(request), 0.7), "answered already"

    def test_an_error_frame_with_the_seq_id_answers_the_request(self) -> None:
        # The server may answer with cmd_id 0 (ErrorFrame); the seq_id still ties it to the request.
        book, ids, _ = synced({A})
        book.want({A, B})
        request = book.request_to_send(1.0, ids)
        assert request is not None
        assert book.receive_response(reply(request, 429, cmd_id=0), 1.1)
        assert book.events() == [Refused(429, "rate limit", frozenset({A, B}))]
        assert state(book) == expect([A, B], [A], sent=2, refusals=1)

    def test_connection_up_forgets_acknowledged_and_resends_everything(self) -> None:
        book, ids, _ = synced({A, B, C})
        book.connection_down()
        assert state(book) == expect([A, B, C], [], sent=1)
        assert book.request_to_send(5.0, ids) is None
        book.connection_up()
        request = book.request_to_send(5.0, ids)
        assert request is not None
        assert on_wire(request) == trades_body(2, [A, B, C])
        # The socket dies again with that request in flight; its late answer belongs to the old socket.
        book.connection_up()
        assert state(book) == expect([A, B, C], [], sent=2)
        assert not book.receive_response(reply(request), 5.5)
        assert state(book) == expect([A, B, C], [], sent=2)
        # To the server the new socket is another connection of the token: the 3 s token gap applies.
        assert book.request_to_send(6.0, ids) is None
        again = book.request_to_send(8.1, ids)
        assert again is not None
        assert on_wire(again) == trades_body(3, [A, B, C])
        assert book.receive_response(reply(again), 8.2)
        assert state(book) == expect([A, B, C], [A, B, C], sent=3)

    def test_reconnect_with_nothing_wanted_sends_nothing(self) -> None:
        book, ids, _ = synced({A})
        book.want([])
        book.connection_up()  # the new socket holds nothing: no cancel needed
        assert book.request_to_send(10.0, ids) is None
        assert state(book) == expect([], [], sent=1)

    def test_acknowledged_events_carry_request_and_answer_times(self) -> None:
        book, ids = make_book(), wire.RequestIds("t")
        book.want({A})
        first = book.request_to_send(0.0, ids)
        assert first is not None
        book.receive_response(reply(first), 0.3)
        book.want({A, B})
        second = book.request_to_send(2.0, ids)
        assert second is not None
        book.receive_response(reply(second), 2.7)
        assert book.events() == [
            Acknowledged(frozenset({A}), 0.0, 0.3),
            Acknowledged(frozenset({A, B}), 2.0, 2.7),
        ]


class RateTests:
    """PROTOCOL.md "Limits": one subscription request per second per connection, 3 s across a token."""

    def test_no_two_requests_closer_than_the_connection_gap(self) -> None:
        book, ids, _ = synced({A})  # sent at 0.0
        book.want({A, B})
        assert book.next_wakeup(0.5) == 1.0
        assert book.request_to_send(0.5, ids) is None
        assert book.request_to_send(0.999, ids) is None
        request = book.request_to_send(1.0, ids)
        assert request is not None
        assert on_wire(request) == trades_body(2, [A, B])

    def test_default_gate_keeps_the_protocol_gaps_with_a_margin(self) -> None:
        rate = RateGate()
        assert rate.conn_gap_s > SUBSCRIBE_GAP_PER_CONNECTION_S
        assert rate.token_gap_s > SUBSCRIBE_GAP_PER_TOKEN_S
        rate.record("c1", 10.0)
        assert rate.ready_at("c1") == (10.0 + rate.conn_gap_s)
        assert rate.ready_at("c2") == (10.0 + rate.token_gap_s)
        assert rate.ready_at("c3") == (10.0 + rate.token_gap_s)
        rate.forget("c1")
        assert rate.ready_at("c2") == 0.0

    def test_two_connections_of_one_token_keep_the_token_gap(self) -> None:
        rate = gate()
        one, two = make_book(conn="c1", rate=rate), make_book(conn="c2", rate=rate)
        ids1, ids2 = wire.RequestIds("one"), wire.RequestIds("two")
        one.want({A})
        two.want({B})
        first = one.request_to_send(0.0, ids1)
        assert first is not None
        assert two.request_to_send(0.0, ids2) is None
        assert two.request_to_send(2.99, ids2) is None
        assert two.next_wakeup(0.0) == 3.0
        second = two.request_to_send(3.0, ids2)
        assert second is not None
        assert on_wire(second) == trades_body(1, [B], "two")
        one.receive_response(reply(first), 0.1)
        one.want({A, C})
        # c1's own gap passed long ago, but c2 sent at 3.0: c1 waits until 6.0.
        assert one.next_wakeup(3.5) == 6.0
        assert one.request_to_send(5.99, ids1) is None
        third = one.request_to_send(6.0, ids1)
        assert third is not None
        assert on_wire(third) == trades_body(2, [A, C], "one")

    def test_a_forgotten_connection_no_longer_delays_the_others(self) -> None:
        rate = gate()
        one, two = make_book(conn="c1", rate=rate), make_book(conn="c2", rate=rate)
        two.want({B})
        assert two.request_to_send(0.0, wire.RequestIds("two")) is not None
        one.want({A})
        assert one.next_wakeup(0.0) == 3.0
        rate.forget("c2")
        assert one.next_wakeup(0.0) == 0.0
        assert one.request_to_send(0.0, wire.RequestIds("one")) is not None

    def test_separate_gates_do_not_interfere(self) -> None:
        one, two = make_book(conn="c1"), make_book(conn="c2")
        one.want({A})
        two.want({B})
        assert one.request_to_send(0.0, wire.RequestIds("one")) is not None
        assert two.request_to_send(0.0, wire.RequestIds("two")) is not None

    def test_429_is_refused_and_retried_after_retry_after(self) -> None:
        book, ids, _ = synced({A})
        book.want({A, B})
        request = book.request_to_send(1.0, ids)
        assert request is not None
        assert book.receive_response(reply(request, 429), 1.5)
        assert book.events() == [Refused(429, "rate limit", frozenset({A, B}))]
        assert state(book) == expect([A, B], [A], sent=2, refusals=1)
        assert book.next_wakeup(1.5) == (1.5 + RETRY_AFTER)
        assert book.request_to_send(3.49, ids) is None
        retry = book.request_to_send(3.5, ids)
        assert retry is not None
        assert on_wire(retry) == trades_body(3, [A, B])
        assert book.receive_response(reply(retry), 3.6)
        assert state(book) == expect([A, B], [A, B], sent=3, refusals=1)

    def test_other_refusals_wait_the_backoff(self) -> None:
        for ret in (400, 401, 603, 606):
            book, ids, _ = synced({A})
            book.want({A, B})
            request = book.request_to_send(1.0, ids)
            assert request is not None
            assert book.receive_response(reply(request, ret), 1.5)
            assert book.events() == [Refused(ret, MSG.get(ret, "error"), frozenset({A, B}))]
            assert state(book) == expect([A, B], [A], sent=2, refusals=1)
            assert book.next_wakeup(1.5) == (1.5 + BACKOFF)
            assert book.request_to_send(11.49, ids) is None
            assert book.request_to_send(11.5, ids) is not None

    def test_a_lost_request_is_sent_again_after_the_timeout(self) -> None:
        book, ids = make_book(), wire.RequestIds("t")
        book.want({A, B})
        first = book.request_to_send(0.0, ids)
        assert first is not None
        assert book.next_wakeup(0.0) == TIMEOUT
        assert book.request_to_send(4.99, ids) is None
        second = book.request_to_send(5.0, ids)
        assert second is not None
        assert on_wire(second) == trades_body(2, [A, B])
        assert state(book) == expect([A, B], [], in_flight=True, sent=2)
        assert not book.receive_response(reply(first), 5.1), "the lost request's late answer"
        assert state(book) == expect([A, B], [], in_flight=True, sent=2)
        assert book.receive_response(reply(second), 5.2)
        assert state(book) == expect([A, B], [A, B], sent=2)

    def test_the_resend_after_a_timeout_also_waits_for_the_token_gap(self) -> None:
        rate = gate()
        one, two = make_book(conn="c1", rate=rate), make_book(conn="c2", rate=rate)
        ids1 = wire.RequestIds("one")
        one.want({A})
        two.want({B})
        assert one.request_to_send(0.0, ids1) is not None  # never answered
        assert two.request_to_send(4.0, wire.RequestIds("two")) is not None
        # c1's request is presumed lost at 5.0, but c2 sent at 4.0: the resend waits until 7.0.
        assert one.next_wakeup(4.5) == 7.0
        assert one.request_to_send(5.0, ids1) is None
        assert one.next_wakeup(5.0) == 7.0
        resend = one.request_to_send(7.0, ids1)
        assert resend is not None
        assert on_wire(resend) == trades_body(2, [A], "one")

    @PROPERTY
    @given(n=st.integers(1, 3), steps=st.lists(RATE_STEP, min_size=1, max_size=30))
    def test_books_sharing_a_gate_never_break_the_rate(self, n: int, steps: list[tuple[Any, ...]]) -> None:
        rate = gate()
        books = [make_book(conn=f"c{i}", rate=rate) for i in range(n)]
        ids = [wire.RequestIds(f"c{i}") for i in range(n)]
        in_flight: list[wire.AnyRequest | None] = [None] * n
        sends: list[tuple[float, str]] = []
        now = 0.0
        for dt, which, action, codes in steps:
            now += dt
            i = which % n
            flight = in_flight[i]
            if action == "want":
                books[i].want(codes)
            elif action in ("answer", "refuse") and flight is not None:
                books[i].receive_response(reply(flight, 200 if action == "answer" else 429), now)
                in_flight[i] = None
            elif action == "reconnect":
                books[i].connection_up()
                in_flight[i] = None
            for j, book in enumerate(books):
                wake = book.next_wakeup(now)
                request = book.request_to_send(now, ids[j])
                if request is not None:
                    assert wake is not None
                    assert wake is not None
                    assert wake <= now, "a request went out before next_wakeup said"
                    sends.append((now, book.conn))
                    in_flight[j] = request
        for (t1, c1), (t2, c2) in itertools.pairwise(sends):
            gap = CONN_GAP if c1 == c2 else TOKEN_GAP
            assert t2 >= (t1 + gap), (c1, t1, c2, t2)


class BisectionTests:
    """PROTOCOL.md "Error codes", our reading of 600 (and 604): the whole request is rejected, the previous
    set stays in force, and the response does not say which code was bad.
    """

    def bisect(
        self,
        ret: int,
        bad: Iterable[str],
        *,
        initial: Iterable[str] = (A, B),
        wanted: Iterable[str] = ALL8,
        hook: Hook | None = None,
    ) -> tuple[SubscriptionBook, list[wire.AnyRequest], FakeServer]:
        book, ids, now = synced(initial)
        server = FakeServer(bad, ret)
        server.held = book.acknowledged
        book.want(wanted)
        requests, _ = run(book, server, ids, now=now + 1.0, keep=frozenset(initial), hook=hook)
        return book, requests, server

    def test_one_bad_code_is_found_and_quarantined(self) -> None:
        for ret, msg in ((600, "code invalid"), (604, "code unauthorized")):
            book, requests, server = self.bisect(ret, {D})
            assert state(book) == expect(
                ALL8, ALL8 - {D}, quarantined={D: (ret, msg)}, sent=1 + len(requests), refusals=3
            )
            assert len(requests) <= bisection_bound(len(ALL8))
            # The exact dialogue: the whole set; then probes keeping {A, B} plus half the suspects.
            assert [(codes, r) for _, _, codes, r in server.log] == [
                (ALL8, ret),
                (frozenset({A, B, C, D, E}), ret),  # suspects C..H; first half C, D, E
                (frozenset({A, B, C}), 200),  # suspects C, D, E; C is good
                (frozenset({A, B, C, D}), ret),  # suspects D, E: D alone is refused
                (ALL8 - {D}, 200),
            ]
            events = book.events()
            assert [e for e in events if not isinstance(e, Acknowledged)] == [Quarantined(D, ret, msg)]
            assert [e.codes for e in events if isinstance(e, Acknowledged)] == [
                frozenset({A, B, C}),
                ALL8 - {D},
            ]

    def test_one_bad_code_anywhere(self) -> None:
        for bad in sorted(ALL8 - {A, B}):
            book, requests, _ = self.bisect(600, {bad})
            assert book.quarantined == {bad: Quarantined(bad, 600, "code invalid")}
            assert book.acknowledged == (ALL8 - {bad})
            assert len(requests) <= bisection_bound(len(ALL8))

    def test_a_single_added_bad_code_is_quarantined_at_once(self) -> None:
        book, requests, _ = self.bisect(600, {C}, wanted={A, B, C})
        # {A, B, C} refused: C was the only addition, so C is bad; {A, B} is still held, nothing to send.
        assert [codes_of(r) for r in requests] == [frozenset({A, B, C})]
        assert state(book) == expect(
            {A, B, C}, {A, B}, quarantined={C: (600, "code invalid")}, sent=2, refusals=1
        )

    def test_two_bad_codes(self) -> None:
        book, requests, _ = self.bisect(600, {C, G})
        assert state(book) == expect(
            ALL8,
            ALL8 - {C, G},
            quarantined={C: (600, "code invalid"), G: (600, "code invalid")},
            sent=1 + len(requests),
            refusals=book.statistics().refusals,
        )
        assert len(requests) <= (2 * (1 + math.ceil(math.log2(6))) + 1)

    def test_all_added_codes_bad(self) -> None:
        book, requests, _ = self.bisect(600, ALL8 - {A, B})
        bad = dict.fromkeys(ALL8 - {A, B}, (600, "code invalid"))
        assert state(book) == expect(
            ALL8, {A, B}, quarantined=bad, sent=1 + len(requests), refusals=book.statistics().refusals
        )
        assert book.acknowledged == {A, B}, "the previous set stayed in force throughout"

    def test_all_wanted_codes_bad_on_a_fresh_connection(self) -> None:
        book, requests, _ = self.bisect(600, {C, D, E}, initial=(), wanted={C, D, E})
        bad = dict.fromkeys((C, D, E), (600, "code invalid"))
        assert state(book) == expect({C, D, E}, [], quarantined=bad, sent=5, refusals=5)
        assert [codes_of(r) for r in requests] == [
            frozenset({C, D, E}),
            frozenset({C}),
            frozenset({D, E}),
            frozenset({D}),
            frozenset({E}),
        ]
        assert book.in_sync, "nothing to hold: in sync with an empty set"

    def test_all_wanted_codes_bad_after_dropping_the_old_ones_cancels(self) -> None:
        book, requests, server = self.bisect(600, {C, D}, wanted={C, D})
        bad = dict.fromkeys((C, D), (600, "code invalid"))
        assert state(book) == expect(
            {C, D}, [], quarantined=bad, sent=1 + len(requests), refusals=book.statistics().refusals
        )
        assert server.log[-1][1:] == (wire.CMD_CANCEL, frozenset(), 200)

    def test_the_bad_code_unsubscribed_during_the_bisection(self) -> None:
        # After the first refusal the strategy drops D: the other suspects are all good, and none of
        # them may be quarantined for D's sake.
        for after in (1, 2, 3):

            def drop_d(n: int, book: SubscriptionBook, after: int = after) -> None:
                if n == after:
                    book.want(ALL8 - {D})

            book, _, _ = self.bisect(600, {D}, hook=drop_d)
            assert book.quarantined == {}
            assert book.acknowledged == (ALL8 - {D})
            assert [e for e in book.events() if isinstance(e, Quarantined)] == []

    def test_a_good_suspect_unsubscribed_during_the_bisection(self) -> None:
        def drop_c(n: int, book: SubscriptionBook) -> None:
            if n == 1:
                book.want(ALL8 - {C})

        book, _, _ = self.bisect(600, {F}, hook=drop_c)
        assert state(book) == expect(
            ALL8 - {C},
            ALL8 - {C, F},
            quarantined={F: (600, "code invalid")},
            sent=book.statistics().requests_sent,
            refusals=book.statistics().refusals,
        )

    def test_codes_added_during_the_bisection_are_sent_after_it(self) -> None:
        def add_h(n: int, book: SubscriptionBook) -> None:
            if n == 2:
                book.want({A, B, C, D, E, H})

        book, _, _ = self.bisect(600, {D}, wanted={A, B, C, D, E}, hook=add_h)
        assert book.acknowledged == {A, B, C, E, H}
        assert book.quarantined.keys() == {D}

    def test_a_quarantined_code_wanted_again_is_tried_again(self) -> None:
        book, _, server = self.bisect(600, {C}, wanted={A, B, C})
        book.want({A, B})
        assert book.quarantined == {}, "no longer wanted: forgotten"
        assert book.in_sync
        book.want({A, B, C})
        server.bad = frozenset()  # say the vendor listed it meanwhile
        requests, _ = run(book, server, wire.RequestIds("u"), now=100.0)
        assert [codes_of(r) for r in requests] == [frozenset({A, B, C})]
        assert book.acknowledged == {A, B, C}

    def test_a_refusal_that_adds_nothing_is_not_bisected(self) -> None:
        # Only removing codes, yet 600: no suspect to blame; a plain refusal with the backoff.
        book, ids, _ = synced({A, B, C})
        book.want({A, B})
        request = book.request_to_send(1.0, ids)
        assert request is not None
        assert book.receive_response(reply(request, 600), 1.1)
        assert book.events() == [Refused(600, "code invalid", frozenset({A, B}))]
        assert state(book) == expect({A, B}, {A, B, C}, sent=2, refusals=1)
        wake = book.next_wakeup(1.1)
        assert wake is not None
        assert wake >= (1.1 + BACKOFF)

    def test_a_429_during_the_bisection_retries_the_same_probe(self) -> None:
        book, ids, _ = synced({A, B})
        book.want(ALL8)
        first = book.request_to_send(1.0, ids)
        assert first is not None
        book.receive_response(reply(first, 600), 1.1)
        probe = book.request_to_send(2.0, ids)
        assert probe is not None
        assert codes_of(probe) == {A, B, C, D, E}
        book.receive_response(reply(probe, 429), 2.1)
        assert book.request_to_send(4.0, ids) is None
        again = book.request_to_send(4.1, ids)
        assert again is not None
        assert codes_of(again) == {A, B, C, D, E}

    @PROPERTY
    @given(universe=UNIVERSE, ret=st.sampled_from([600, 604]))
    def test_bisection_finds_exactly_the_bad_wanted_codes(
        self, universe: dict[str, tuple[bool, bool, bool]], ret: int
    ) -> None:
        bad = {c for c, (is_bad, _, _) in universe.items() if is_bad}
        initial = {c for c, (is_bad, held, _) in universe.items() if held and not is_bad}
        wanted = {c for c, (_, _, want) in universe.items() if want}

        book, ids, now = synced(initial)
        server = FakeServer(bad, ret)
        server.held = book.acknowledged
        book.want(wanted)
        requests, _ = run(book, server, ids, now=now + 1.0, keep=frozenset(initial))

        assert book.quarantined.keys() == (bad & wanted)
        assert book.acknowledged == (wanted - bad)
        added = len(wanted - initial)
        rounds = len(bad & wanted)
        assert len(requests) <= (rounds * (1 + math.ceil(math.log2(max(added, 1)))) + 2)
        assert {e.code for e in book.events() if isinstance(e, Quarantined)} == (bad & wanted)

    @PROPERTY
    @given(
        bad=CODES12,
        initial=CODES12,
        wanted=CODES12,
        changes=st.dictionaries(st.integers(1, 12), CODES12, max_size=3),
    )
    def test_bisection_with_strategies_changing_their_minds(
        self,
        bad: frozenset[str],
        initial: frozenset[str],
        wanted: frozenset[str],
        changes: dict[int, frozenset[str]],
    ) -> None:
        initial -= bad

        def change(n: int, book: SubscriptionBook) -> None:
            if n in changes:
                book.want(changes[n])

        book, ids, now = synced(initial)
        server = FakeServer(bad)
        server.held = book.acknowledged
        book.want(wanted)
        run(book, server, ids, now=now + 1.0, hook=change)
        final = book.desired
        assert book.quarantined.keys() == (bad & final)
        assert book.acknowledged == (final - bad)
