"""Tests of actors.core.codeliveness: per-code liveness and its fan-out, with fake times."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from actors.core.codeliveness import (
    LOG_EVENTS_EACH,
    CodeHealth,
    CodeLiveness,
    CodeState,
    LivenessEvent,
    NeverStarted,
    Reason,
    Recovered,
    Resubscribe,
    Stale,
    fan_out,
)


def test_a_quiet_code_goes_stale_and_recovers_with_its_next_tick() -> None:
    live = CodeLiveness({"stock-0": 60.0})
    live.acknowledged("stock-0", ["AAPL.US", "TSLA.US"], now=0.0)
    live.ticked("AAPL.US", 1.0)
    live.ticked("TSLA.US", 2.0)
    assert live.next_wakeup() == 61.0
    live.poll(60.9)
    assert live.events() == []
    live.poll(61.0)
    assert live.events() == [Stale("AAPL.US", "stock-0", 60.0, Reason.QUIET)]
    assert live.watched() == {"AAPL.US"}
    assert live.next_wakeup() == 62.0
    live.ticked("AAPL.US", 70.0)
    assert live.events() == [Recovered("AAPL.US", "stock-0", 69.0)]
    assert live.status(70.0)["AAPL.US"].state == "ok"
    assert "no tick for 60.0 s while its connection stock-0 is alive" in str(
        Stale("AAPL.US", "stock-0", 60.0, Reason.QUIET)
    )


def test_a_dropped_connection_makes_all_its_codes_stale_at_once() -> None:
    live = CodeLiveness(default_s=60.0)
    live.acknowledged("stock-0", ["AAPL.US", "TSLA.US"], now=0.0)
    live.acknowledged("forex_crypto-0", ["EURUSD"], now=0.0)
    for code in ("AAPL.US", "TSLA.US", "EURUSD"):
        live.ticked(code, 5.0)
    live.connection_down("stock-0", 7.0)
    events = live.events()
    assert sorted(e.code for e in events) == ["AAPL.US", "TSLA.US"]
    assert all(
        isinstance(e, Stale) and e.reason is Reason.CONNECTION and e.silent_for_s == 2.0 for e in events
    )
    assert "its connection stock-0 is dead" in str(events[0])
    live.connection_down("stock-0", 8.0)  # already stale: told once
    assert live.events() == []
    live.ticked("TSLA.US", 6.5)  # learnt late: a tick from before the drop proves nothing
    assert live.events() == []
    assert live.status(9.0)["TSLA.US"].state == "stale"
    live.acknowledged("stock-0", ["AAPL.US", "TSLA.US"], now=9.0)  # resubscribed: still stale
    assert live.status(9.0)["AAPL.US"] == live.status(9.0)["AAPL.US"].__class__(
        "stale", "connection", "stock-0", 4.0
    )
    live.ticked("AAPL.US", 10.0)
    assert live.events() == [Recovered("AAPL.US", "stock-0", 5.0)]


def test_a_code_that_never_ticks_is_resubscribed_once_then_reported() -> None:
    live = CodeLiveness({"stock-0": 10.0})
    live.acknowledged("stock-0", ["S0006.US"], now=0.0)
    assert live.status(0.0)["S0006.US"].state == CodeState.WAITING
    live.poll(10.0)
    assert live.events() == [Resubscribe("S0006.US", "stock-0")]
    live.acknowledged("stock-0", ["S0006.US"], now=10.5)  # the resend's acknowledgement changes nothing
    assert live.next_wakeup() == 20.0
    live.poll(20.0)
    [event] = live.events()
    assert event == NeverStarted("S0006.US", "stock-0", 20.0)  # since the acknowledgement
    assert "beyond the plan's per-connection limit" in str(event)
    live.poll(100.0)
    assert live.events() == []  # reported once
    assert live.next_wakeup() is None
    live.ticked("S0006.US", 120.0)
    assert live.events() == [Recovered("S0006.US", "stock-0", 120.0)]


def test_a_quiet_code_whose_connection_is_then_found_dead_is_not_told_twice() -> None:
    live = CodeLiveness({"c": 3.0})
    live.acknowledged("c", ["A"], now=0.0)
    live.ticked("A", 1.0)
    live.poll(4.0)
    assert live.events() == [Stale("A", "c", 3.0, Reason.QUIET)]
    live.connection_down("c", 6.0)  # the false-alive socket is declared silent later
    assert live.events() == []
    assert live.status(6.0)["A"].reason == "connection"


def test_a_connection_lost_before_the_first_tick_waits_again_on_the_new_socket() -> None:
    live = CodeLiveness({"stock-0": 10.0})
    live.acknowledged("stock-0", ["S0006.US"], now=0.0)
    live.connection_down("stock-0", 3.0)
    assert live.events() == [Stale("S0006.US", "stock-0", 3.0, Reason.CONNECTION)]
    live.acknowledged("stock-0", ["S0006.US"], now=4.0)
    assert live.status(4.0)["S0006.US"].state == "waiting"
    live.connection_down("stock-0", 5.0)  # again, before any tick: told once already
    assert live.events() == []
    live.acknowledged("stock-0", ["S0006.US"], now=6.0)
    live.poll(16.0)
    assert live.events() == [Resubscribe("S0006.US", "stock-0")]
    live.poll(26.0)
    assert [type(e) for e in live.events()] == [NeverStarted]
    live.acknowledged("stock-0", ["S0007.US"], now=30.0)
    live.acknowledged("stock-0", ["S0007.US", "S0008.US"], now=30.0)
    live.connection_down("stock-0", 31.0)
    live.acknowledged("stock-0", ["S0007.US", "S0008.US"], now=32.0)
    live.ticked("S0007.US", 33.0)  # a waiting code that was told stale is told it recovered
    assert [e for e in live.events() if isinstance(e, Recovered)] == [Recovered("S0007.US", "stock-0", 3.0)]


def test_zero_disables_and_unheld_codes_are_forgotten() -> None:
    live = CodeLiveness({"stock-0": 0.0}, default_s=5.0)
    live.acknowledged("stock-0", ["AAPL.US"], now=0.0)
    live.acknowledged("forex_crypto-0", ["EURUSD"], now=0.0)
    assert live.next_wakeup() == 5.0
    live.poll(1000.0)
    assert [type(e) for e in live.events()] == [Resubscribe]  # EURUSD only
    live.acknowledged("forex_crypto-0", [], now=1001.0)
    assert live.codes() == {"AAPL.US"}
    live.ticked("EURUSD", 1002.0)  # no longer held: ignored
    assert live.events() == []


def test_a_book_only_code_is_watched_like_a_trade_code() -> None:
    live = CodeLiveness({"forex_crypto-0": 10.0})
    live.acknowledged("forex_crypto-0", ["BTCUSDT"], now=0.0, kind="book")
    assert live.codes() == {"BTCUSDT"}
    assert live.status(0.0)["BTCUSDT"] == CodeHealth("waiting", "", "forex_crypto-0", -1.0)
    live.ticked("BTCUSDT", 1.0)  # its first order-book push
    live.poll(11.0)
    assert live.events() == [Stale("BTCUSDT", "forex_crypto-0", 10.0, Reason.QUIET)]
    live.ticked("BTCUSDT", 12.0)
    assert live.events() == [Recovered("BTCUSDT", "forex_crypto-0", 11.0)]
    live.connection_down("forex_crypto-0", 13.0)
    assert live.events() == [Stale("BTCUSDT", "forex_crypto-0", 1.0, Reason.CONNECTION)]
    live.acknowledged("forex_crypto-0", [], now=14.0, kind="book")  # unsubscribed: forgotten
    assert live.codes() == frozenset()


def test_a_book_only_code_that_never_starts_resubscribes_its_book() -> None:
    live = CodeLiveness({"forex_crypto-0": 10.0})
    live.acknowledged("forex_crypto-0", ["ETHUSDT"], now=0.0, kind="book")
    live.poll(10.0)
    assert live.events() == [Resubscribe("ETHUSDT", "forex_crypto-0", "book")]
    live.poll(20.0)
    assert live.events() == [NeverStarted("ETHUSDT", "forex_crypto-0", 20.0)]


def test_a_code_held_for_both_kinds_counts_either_and_is_forgotten_only_when_gone_from_both() -> None:
    live = CodeLiveness({"c0": 10.0, "c1": 10.0})
    live.acknowledged("c0", ["A"], now=0.0)
    live.acknowledged("c0", ["A"], now=0.5, kind="book")
    assert live.codes() == {"A"}
    live.poll(10.0)  # neither kind ticked: one resubscribe per kind
    assert live.events() == [Resubscribe("A", "c0", "trades"), Resubscribe("A", "c0", "book")]
    live.ticked("A", 12.0)  # a book push alone: ok
    live.poll(21.9)
    assert live.events() == []
    assert live.status(21.9)["A"].state == "ok"
    live.acknowledged("c0", [], now=22.0)  # trades dropped, the book still held: still watched
    assert live.codes() == {"A"}
    assert live.status(22.0)["A"].connection == "c0"
    live.acknowledged("c0", [], now=23.0, kind="book")
    assert live.codes() == frozenset()
    # Trades on c1 and the book on c0: the trade connection is its home (status); either connection's
    # death makes it stale, and the event names the connection that died.
    live.acknowledged("c0", ["B"], now=30.0, kind="book")
    live.acknowledged("c1", ["B"], now=30.0)
    assert live.status(30.0)["B"].connection == "c1"
    live.ticked("B", 31.0)
    live.connection_down("c0", 32.0)
    assert live.events() == [Stale("B", "c0", 1.0, Reason.CONNECTION)]


def test_status_ages_are_as_of_the_status_call() -> None:
    # The registry learns tick times at its looks at the decoders; status(now) gives the age at the
    # look plus the time since the look, on the caller's clock.
    live = CodeLiveness({"c": 60.0})
    live.acknowledged("c", ["A"], now=100.0)
    live.ticked("A", 110.0 - 2.5)  # the look at 110: the decoder said 2.5 s ago
    assert live.status(110.0)["A"].last_tick_age_s == 2.5
    assert live.status(117.25)["A"].last_tick_age_s == 9.75


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("tick"), st.sampled_from(["A", "B", "C", "D"])),
            st.tuples(st.just("down"), st.sampled_from(["c0", "c1"])),
            st.tuples(st.just("ack"), st.sampled_from(["c0", "c1"])),
            st.tuples(st.just("book"), st.sampled_from(["c0", "c1"])),
            st.tuples(st.just("poll"), st.just("")),
        ),
        max_size=60,
    ),
    st.lists(st.floats(0.0, 8.0), min_size=60, max_size=60),
)
def test_events_alternate_and_nothing_moves_before_the_wakeup(
    ops: list[tuple[str, str]], steps: list[float]
) -> None:
    live = CodeLiveness({"c0": 5.0, "c1": 3.0})
    placement = {"A": "c0", "B": "c0", "C": "c1"}
    book_placement = {"A": "c1", "D": "c1", "B": "c0"}  # D: a book only; A: trades and book apart
    now = 0.0
    live.acknowledged("c0", ["A", "B"], now)
    live.acknowledged("c1", ["C"], now)
    live.acknowledged("c1", ["A", "D"], now, kind="book")
    live.acknowledged("c0", ["B"], now, kind="book")
    bad: dict[str, bool] = {}
    for (op, arg), step in zip(ops, steps, strict=False):
        wake = live.next_wakeup()
        now += step
        if op == "tick":
            live.ticked(arg, now)
        elif op == "down":
            live.connection_down(arg, now)
        elif op == "ack":
            live.acknowledged(arg, [c for c, conn in placement.items() if conn == arg], now)
        elif op == "book":
            live.acknowledged(arg, [c for c, conn in book_placement.items() if conn == arg], now, kind="book")
        else:
            live.poll(now)
            if wake is None or now < wake:
                assert not [e for e in live.events() if not isinstance(e, Recovered)]
        for event in live.events():
            if isinstance(event, Stale):
                assert not bad.get(event.code), f"{event.code} told stale twice"
                bad[event.code] = True
            elif isinstance(event, NeverStarted):  # also after a Stale: its connection died before a tick
                bad[event.code] = True
            elif isinstance(event, Recovered):
                assert bad.get(event.code), f"{event.code} recovered without being stale"
                bad[event.code] = False
            assert getattr(event, "silent_for_s", 0.0) >= 0.0
    assert live.codes() == {"A", "B", "C", "D"}  # every held code is watched, books included


def test_fan_out_makes_one_call_per_holder_and_bounds_the_log() -> None:
    # A connection of 500 codes dies: 500 events become one list per holder, in order, and the log
    # gets LOG_EVENTS_EACH lines and one sum, not 500.
    codes = [f"C{i:04d}USDT" for i in range(500)]
    holders = {code: {"a", "b"} if i % 2 else {"a"} for i, code in enumerate(codes)}
    events: list[LivenessEvent] = [Stale(code, "fx-0", 2.0, Reason.CONNECTION) for code in codes]
    events += [Recovered(codes[0], "fx-0", 3.0), Resubscribe("XAUUSD", "fx-1", "book")]
    events.append(NeverStarted("SILVER", "fx-1", 60.0))
    plan = fan_out(events, lambda code: holders.get(code, {"c"}))
    assert set(plan.told) == {"a", "b"}
    assert [code for _, code, _ in plan.told["a"]] == [*codes, codes[0]]
    assert plan.told["a"][0] == ("stale", codes[0], 2.0)
    assert plan.told["a"][-1] == (
        "recovered",
        codes[0],
        3.0,
    )
    assert [code for _, code, _ in plan.told["b"]] == codes[1::2]
    assert plan.problems == {"c": [("SILVER", str(events[-1]))]}
    assert plan.resend == {("fx-1", "book")}
    assert len(plan.texts) == len(events)
    assert len(plan.lines) == LOG_EVENTS_EACH + 1
    assert plan.lines[0] == ("warning", f"{events[0]}; told ['a']")
    level, summary = plan.lines[-1]
    assert level == "warning"
    assert "483 more code events" in summary
    assert "480 stale" in summary
    assert "1 never started" in summary


def test_fan_out_of_a_small_round_logs_every_event() -> None:
    events: list[LivenessEvent] = [
        Stale("EURUSD", "fx-0", 61.0, Reason.QUIET),
        Recovered("EURUSD", "fx-0", 62.0),
    ]
    plan = fan_out(events, lambda _code: ["s"])
    assert plan.lines == [("warning", f"{events[0]}; told ['s']"), ("info", f"{events[1]}; told ['s']")]
    assert plan.told == {"s": [("stale", "EURUSD", 61.0), ("recovered", "EURUSD", 62.0)]}
