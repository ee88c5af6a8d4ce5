"""The registry's desk (actors/core/desk.py): its decisions, without Ray, sockets or a clock.

One stock connection of 5 codes (the free plan), no rate gaps: each test feeds events at chosen times
and asserts the commands that come out, in order.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.core import wire
from actors.core.desk import (
    DECODER_ANSWER_S,
    AskAges,
    Command,
    Count,
    Desk,
    Log,
    Save,
    Send,
    SetRoutes,
    Tell,
    TellHealth,
    TellSession,
    kind_of,
)
from actors.core.errors import QuotaExhausted, SubscriptionRefused, VendorError
from actors.core.sessions import Intervals

CONN = "stock-0"
C = TypeVar("C")


def make(**options: Any) -> Desk:
    desk = Desk({"stock": [CONN]}, 5, plan="free", conn_gap_s=0.0, token_gap_s=0.0, **options)
    desk.commands()  # the start-up ones (Announce)
    return desk


def of(commands: list[Command], kind: type[C]) -> list[C]:
    return [c for c in commands if isinstance(c, kind)]


def take_routes(desk: Desk, now: float) -> None:
    """The next tick's routes, taken by every decoder."""
    desk.tick(now)
    for routes in of(desk.commands(), SetRoutes):
        desk.routes_taken(routes.decoder, routes.call, now)


def request(send: Send) -> tuple[int, set[str]]:
    """The seq_id and codes of the request ``send`` carries."""
    raw = msgspec.json.decode(send.payload)
    return raw["seq_id"], {s["code"] for s in raw["data"].get("symbol_list", [])}


def answer(desk: Desk, send: Send, now: float, ret: int = 200, msg: str = "ok") -> list[Command]:
    seq_id, _ = request(send)
    desk.responses(CONN, send.epoch, [wire.SubscribeTradesAck(ret=ret, msg=msg, seq_id=seq_id)], now)
    return desk.commands()


def subscribed(desk: Desk, strategy: str, codes: list[str], now: float) -> Send:
    """Subscribe, take the routes, and return the request the next tick sends."""
    desk.subscribe(strategy, codes)
    take_routes(desk, now)
    desk.tick(now)
    (send,) = of(desk.commands(), Send)
    return send


@pytest.fixture
def desk() -> Desk:
    desk = make()
    desk.connection_up(CONN, 1, 0.0)
    assert desk.commands() == []  # nothing held: nothing to ask for
    return desk


# --- validation: every refusal names each bad code and changes nothing --------------------------------


def test_check_names_each_bad_code_with_a_reason() -> None:
    problems = make().check(["NASDAQ:TSLA", "EURUSD", "AAPL.US", ""])
    assert set(problems) == {"NASDAQ:TSLA", "EURUSD", ""}
    assert "did you mean 'TSLA.US'?" in problems["NASDAQ:TSLA"]
    assert problems["EURUSD"] == "its endpoint 'forex_crypto' is not configured in [endpoints]"


@pytest.mark.parametrize(
    ("codes", "kind", "refusal"),
    [
        ([], "trades", SubscriptionRefused),
        (["AAPL.US", "BTC/USDT"], "trades", SubscriptionRefused),
        (["AAPL.US"], "ticks", SubscriptionRefused),
        ([f"S000{i}.US" for i in range(6)], "trades", QuotaExhausted),
    ],
)
def test_a_refused_subscribe_changes_nothing_and_commands_nothing(
    desk: Desk, codes: list[str], kind: str, refusal: type[Exception]
) -> None:
    desk.subscribe("a", ["TSLA.US"])
    desk.commands()
    with pytest.raises(refusal):
        desk.subscribe("a", codes, kind)
    assert desk.commands() == []
    assert desk.holdings_of("a") == {"TSLA.US": 1}


def test_a_kind_other_than_trades_or_book_is_named() -> None:
    with pytest.raises(SubscriptionRefused) as caught:
        kind_of("ticks")
    assert caught.value.problems == {"kind": "'ticks' is not 'trades' or 'book'"}


def test_a_change_is_saved_first_and_acted_on_at_once(desk: Desk) -> None:
    assert desk.subscribe("a", ["AAPL.US", "AAPL.US"]) == {"AAPL.US": 2}
    (save,) = desk.commands()
    assert isinstance(save, Save)
    assert save.state.holdings == {"a": {"AAPL.US": 2}}
    assert desk.next_wakeup(3.0) == 3.0
    assert not desk.status(3.0, 1).in_sync


# --- routes before requests -----------------------------------------------------------------------------


def test_no_request_before_the_decoder_took_the_latest_routes(desk: Desk) -> None:
    desk.subscribe("a", ["AAPL.US"])
    desk.tick(1.0)
    (first,) = of(desk.commands(), SetRoutes)
    assert (first.decoder, first.trades) == (0, {"AAPL.US": ("a",)})
    desk.subscribe("a", ["TSLA.US"])
    desk.tick(1.5)
    (second,) = of(desk.commands(), SetRoutes)
    assert of(desk.commands(), Send) == []
    desk.routes_taken(0, first.call, 1.6)  # superseded: still held
    desk.tick(1.6)
    assert of(desk.commands(), Send) == []
    assert desk.next_wakeup(1.6) == 1.5 + 2.0  # only the warning about a slow decoder is due
    desk.tick(3.6)
    (warning,) = of(desk.commands(), Log)
    assert "decoder:0 has not taken new routes for 2.1 s" in warning.text
    assert desk.status(3.6, 1).routes_awaited == {"decoder:0": 2.1}
    desk.routes_taken(0, second.call, 4.0)
    desk.tick(4.0)
    (send,) = of(desk.commands(), Send)
    assert request(send)[1] == {"AAPL.US", "TSLA.US"}


def test_an_acknowledged_set_is_in_sync_and_asks_for_nothing_more(desk: Desk) -> None:
    send = subscribed(desk, "a", ["AAPL.US"], 1.0)
    commands = answer(desk, send, 1.2)
    assert Count("subscription_requests", (("connection", CONN), ("code", "200"))) in commands
    assert desk.status(1.2, 1).in_sync
    desk.tick(1.3)
    assert of(desk.commands(), Send) == []


# --- quarantine and the 603 policy -------------------------------------------------------------------


def test_a_600_quarantines_the_new_code_and_tells_its_holders(desk: Desk) -> None:
    answer(desk, subscribed(desk, "a", ["AAPL.US"], 1.0), 1.1)
    send = subscribed(desk, "b", ["ZZZZ.US"], 2.0)
    commands = answer(desk, send, 2.1, 600, "code invalid")
    tells = of(commands, Tell)
    assert [(t.holder, t.code, str(t.error)) for t in tells] == [
        ("b", "ZZZZ.US", str(VendorError(600, "code invalid")))
    ]
    saves = of(commands, Save)
    assert saves
    assert saves[-1].state.refused == {"ZZZZ.US": str(VendorError(600, "code invalid"))}
    assert desk.holdings_of("b") == {}
    with pytest.raises(SubscriptionRefused) as caught:
        desk.subscribe("c", ["ZZZZ.US"])
    assert caught.value.problems["ZZZZ.US"].startswith("the vendor refused it: ")


def test_a_603_is_told_once_to_each_holder(desk: Desk) -> None:
    commands = answer(desk, subscribed(desk, "a", ["AAPL.US"], 1.0), 1.1, 603, "token level not enough")
    assert [(t.holder, t.code) for t in of(commands, Tell)] == [("a", "*")]
    desk.tick(20.0)  # after the refusal's backoff the whole set goes again, and is refused again
    (again,) = of(desk.commands(), Send)
    assert of(answer(desk, again, 20.1, 603, "token level not enough"), Tell) == []
    send = subscribed(desk, "b", ["TSLA.US"], 40.0)
    assert [(t.holder, t.code) for t in of(answer(desk, send, 40.1, 603), Tell)] == [("b", "*")]


# --- per-code liveness: ask, answer, give up -------------------------------------------------------------


def live(stale_after_s: float = 10.0) -> Desk:
    desk = make(stale_after_s=stale_after_s)
    desk.connection_up(CONN, 1, 0.0)
    answer(desk, subscribed(desk, "a", ["AAPL.US"], 1.0), 1.0)
    return desk


def test_a_quiet_code_is_judged_on_the_decoders_ages() -> None:
    desk = live()
    assert desk.next_wakeup(1.0) == 11.0  # acknowledged at 1.0, no tick within 10 s
    desk.tick(11.0)
    (ask,) = of(desk.commands(), AskAges)
    assert (ask.decoders, ask.watch) == ((0,), ())
    desk.ages_answered(ask.round, 0, {"AAPL.US": 0.5}, 11.2)  # it did tick, half a second ago
    assert of(desk.commands(), TellHealth) == []
    assert desk.code_health(11.2)["AAPL.US"].state == "ok"


def test_a_round_nobody_answers_is_given_up_and_asked_again() -> None:
    desk = live()
    desk.tick(11.0)
    (ask,) = of(desk.commands(), AskAges)
    assert desk.next_wakeup(11.5) == 11.0 + DECODER_ANSWER_S
    desk.tick(13.0)
    assert "1 decoder(s) did not answer" in of(desk.commands(), Log)[0].text
    desk.ages_answered(ask.round, 0, {"AAPL.US": 0.1}, 13.1)  # too late: ignored
    assert desk.code_health(13.1)["AAPL.US"].state != "ok"
    assert desk.next_wakeup(13.1) == 15.0
    desk.tick(15.0)
    (again,) = of(desk.commands(), AskAges)
    assert again.round == ask.round + 1


def test_a_decoder_that_fails_to_answer_gives_the_round_up() -> None:
    desk = live()
    desk.tick(11.0)
    (ask,) = of(desk.commands(), AskAges)
    desk.ages_answered(ask.round, 0, None, 11.1, "RayActorError")
    assert "failed to answer (RayActorError)" in of(desk.commands(), Log)[0].text
    assert desk.next_wakeup(11.1) == pytest.approx(13.1)


def test_a_dead_connection_tells_the_holders_its_codes_are_stale() -> None:
    desk = live()
    desk.connection_down(CONN, 1, 5.0, stopping=True)  # a clean stop tells nobody
    assert of(desk.commands(), TellHealth) == []
    desk = live()
    desk.connection_down(CONN, 1, 5.0)
    (told,) = of(desk.commands(), TellHealth)
    assert (told.holder, [c[:2] for c in told.changes]) == ("a", [("stale", "AAPL.US")])
    desk.connection_down(CONN, 0, 5.0)  # an older socket's news: ignored
    assert desk.commands() == []


def test_a_held_code_whose_session_closes_and_opens_is_told_to_its_holder_not_stale() -> None:
    wall = 1_800_000_000.0
    session = Intervals("test", lambda *_: [(wall, wall + 5.0), (wall + 100.0, wall + 200.0)])
    desk = make(stale_after_s=10.0, open_grace_s=3.0, sessions=lambda _code: session, wall_offset_s=wall)
    desk.connection_up(CONN, 1, 0.0)
    answer(desk, subscribed(desk, "a", ["AAPL.US"], 1.0), 1.0)
    assert desk.next_wakeup(1.0) == 5.0  # the close comes before the stale clock runs out
    desk.tick(5.0)
    (ask,) = of(desk.commands(), AskAges)
    desk.ages_answered(ask.round, 0, {}, 5.0)
    commands = desk.commands()
    assert of(commands, TellHealth) == []
    assert of(commands, TellSession) == [TellSession("a", [("AAPL.US", False, wall + 5.0)])]
    health = desk.code_health(50.0)["AAPL.US"]
    assert (health.state, health.session, health.opens_at) == ("closed", "test", wall + 100.0)
    desk.connection_down(CONN, 1, 60.0)  # a dead socket while closed: nobody is told it is stale
    assert of(desk.commands(), TellHealth) == []
    desk.tick(60.0)  # the decoders learn the new watch list: a closed code's first tick is news
    (ask,) = of(desk.commands(), AskAges)
    assert ask.watch == ("AAPL.US",)
    desk.ages_answered(ask.round, 0, {}, 60.0)
    desk.connection_up(CONN, 2, 61.0)
    answer(desk, of(desk.commands(), Send)[0], 61.0)  # resubscribed on the new socket
    desk.tick(100.0)
    (ask,) = of(desk.commands(), AskAges)
    desk.ages_answered(ask.round, 0, {"AAPL.US": 0.5}, 100.0)  # before the open: a tick while closed
    commands = desk.commands()
    assert of(commands, TellSession) == [TellSession("a", [("AAPL.US", True, wall + 100.0)])]
    assert of(commands, Count) == [Count("session_mismatches", (("connection", CONN),))]
    desk.codes_ticked({"AAPL.US": 0.0}, 100.0)
    assert desk.code_health(100.0)["AAPL.US"].state == "ok"


# --- properties -----------------------------------------------------------------------------------------

CODES = [f"S000{i}.US" for i in range(7)]  # more than the 5 the plan allows
op = st.tuples(
    st.sampled_from(["sub", "unsub", "drop"]), st.sampled_from("xyz"), st.lists(st.sampled_from(CODES))
)


@settings(max_examples=150, deadline=None)
@given(st.lists(op, max_size=25))
def test_holdings_follow_a_refcount_model_and_refusals_change_nothing(ops: list[Any]) -> None:
    desk = make()
    model: dict[str, dict[str, int]] = {}
    now = 0.0
    for action, strategy, codes in ops:
        now += 1.0
        before = desk.state()
        try:
            if action == "sub":
                desk.subscribe(strategy, codes)
            elif action == "unsub":
                desk.unsubscribe(strategy, codes)
            else:
                desk.drop_strategy(strategy)
        except SubscriptionRefused:
            assert desk.commands() == []
            assert desk.state() == before
            continue
        held = model.setdefault(strategy, {})
        for code in codes:
            held[code] = held.get(code, 0) + (1 if action == "sub" else -1)
        if action == "drop":
            held.clear()
        model = {s: {c: n for c, n in h.items() if n} for s, h in model.items()}
        model = {s: h for s, h in model.items() if h}
        (save, *_) = desk.commands()
        assert isinstance(save, Save)
        assert save.state.holdings == model
        union = {c for h in model.values() for c in h}
        assert len(union) <= 5  # the plan's room: never more held than one connection carries
        desk.tick(now)
        desk.commands()
        assert set().union(*(b.desired for b in desk.books())) == union


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=30.0), min_size=1, max_size=20))
def test_next_wakeup_is_never_in_the_past_once_ticked(times: list[float]) -> None:
    desk = live()
    for now in sorted(times):
        desk.tick(now + 1.0)
        desk.commands()
        due = desk.next_wakeup(now + 1.0)
        assert due is None or due >= now + 1.0
