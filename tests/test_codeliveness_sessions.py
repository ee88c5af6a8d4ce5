"""Tests of actors.core.codeliveness with trading sessions: a closed market is not a dead feed."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from actors.core.codeliveness import (
    CodeLiveness,
    CodeState,
    LivenessEvent,
    NeverStarted,
    Reason,
    Resubscribe,
    SessionChanged,
    Stale,
    TickWhileClosed,
    fan_out,
)
from actors.core.sessions import Always, Intervals, Session, merge

WALL = 1_800_000_000.0  # wall-clock epoch seconds at monotonic 0.0: sessions are read at now + WALL


def windows(*spans: tuple[float, float]) -> Session:
    """A session open in ``spans`` (monotonic seconds of the test's clock)."""
    opened = merge((a + WALL, b + WALL) for a, b in spans)
    return Intervals("test", lambda lo, hi: [(a, b) for a, b in opened if b > lo and a < hi])


def liveness(session: Session, *, stale: float = 10.0, grace: float = 5.0) -> CodeLiveness:
    return CodeLiveness(
        {"stock-0": stale},
        sessions=lambda code: session if code.endswith(".US") else Always(),
        open_grace_s={"stock-0": grace},
        wall_offset_s=WALL,
    )


class TestClosedSession:
    def test_a_code_acknowledged_while_closed_is_closed_then_gets_the_grace_at_the_open(self) -> None:
        live = liveness(windows((100.0, 200.0)))
        live.acknowledged("stock-0", ["AAPL.US"], now=0.0)
        health = live.status(0.0)["AAPL.US"]
        assert (health.state, health.session, health.opens_at) == ("closed", "test", WALL + 100.0)
        assert live.next_wakeup() == 100.0  # the open, not the never-started clock
        live.poll(99.0)
        assert live.events() == []
        live.poll(100.0)
        assert live.events() == [SessionChanged("AAPL.US", "stock-0", True, WALL + 100.0, "test")]
        assert live.status(100.0)["AAPL.US"].state == CodeState.WAITING
        assert live.next_wakeup() == 115.0  # the open + open_grace_s + stale_after_s
        live.poll(114.9)
        assert live.events() == []
        live.poll(115.0)
        assert live.events() == [Resubscribe("AAPL.US", "stock-0")]
        live.poll(125.0)
        assert live.events() == [NeverStarted("AAPL.US", "stock-0", 125.0)]

    def test_a_ticking_code_through_the_close_is_closed_and_at_the_open_muted_is_stale(self) -> None:
        live = liveness(windows((0.0, 50.0), (1000.0, 2000.0)))
        live.acknowledged("stock-0", ["AAPL.US", "TSLA.US"], now=0.0)
        for t in (10.0, 40.0, 49.0):
            live.ticked("AAPL.US", t)
            live.ticked("TSLA.US", t)
        live.poll(50.0)
        assert sorted(live.events(), key=str) == [
            SessionChanged("AAPL.US", "stock-0", False, WALL + 50.0, "test"),
            SessionChanged("TSLA.US", "stock-0", False, WALL + 50.0, "test"),
        ]
        assert {c: h.state for c, h in live.status(50.0).items()} == {
            "AAPL.US": "closed",
            "TSLA.US": "closed",
        }
        assert live.next_wakeup() == 1000.0
        live.poll(600.0)  # a night without ticks: no stale
        assert live.events() == []
        live.connection_down("stock-0", 700.0)  # nor a dead socket while closed
        assert live.events() == []
        live.poll(1000.0)
        assert [e.open for e in live.events() if isinstance(e, SessionChanged)] == [True, True]
        live.ticked("TSLA.US", 1003.0)
        live.ticked("TSLA.US", 1012.0)
        live.poll(1014.9)
        assert live.events() == []
        live.poll(1015.0)
        assert live.events() == [Stale("AAPL.US", "stock-0", 1015.0 - 49.0, Reason.QUIET)]
        states = {c: h.state for c, h in live.status(1015.0).items()}
        assert states == {"AAPL.US": "stale", "TSLA.US": "ok"}

    def test_a_tick_while_closed_is_ok_and_counted_once_per_episode(self) -> None:
        live = liveness(windows((500.0, 600.0), (900.0, 950.0)))
        live.acknowledged("stock-0", ["AAPL.US"], now=0.0)
        live.ticked("AAPL.US", 20.0)
        live.ticked("AAPL.US", 21.0)
        assert live.events() == [TickWhileClosed("AAPL.US", "stock-0", "test")]
        assert live.mismatches == 1
        assert live.status(21.0)["AAPL.US"].state == "ok"
        assert live.next_wakeup() == 31.0  # back to closed when it goes quiet again
        live.poll(31.0)
        assert live.events() == []
        assert live.status(31.0)["AAPL.US"].state == "closed"
        live.ticked("AAPL.US", 40.0)  # the same closed episode: not counted again
        assert live.events() == []
        assert live.mismatches == 1
        live.poll(500.0)
        live.poll(600.0)
        live.events()
        live.ticked("AAPL.US", 700.0)  # a new closed episode
        assert live.events() == [TickWhileClosed("AAPL.US", "stock-0", "test")]
        assert live.mismatches == 2

    def test_a_tick_from_before_the_close_learnt_late_is_no_mismatch(self) -> None:
        live = liveness(windows((0.0, 50.0), (1000.0, 2000.0)))
        live.acknowledged("stock-0", ["AAPL.US"], now=0.0)
        live.poll(52.0)
        live.events()
        live.ticked("AAPL.US", 49.5)
        assert live.events() == []
        assert live.mismatches == 0
        assert live.status(52.0)["AAPL.US"].state == "closed"

    def test_always_goes_stale_as_without_sessions(self) -> None:
        live = liveness(windows((100.0, 200.0)))
        live.acknowledged("stock-0", ["BTCUSDT"], now=0.0)
        live.ticked("BTCUSDT", 1.0)
        live.poll(11.0)
        assert live.events() == [Stale("BTCUSDT", "stock-0", 10.0, Reason.QUIET)]

    def test_session_changes_are_told_to_the_holders(self) -> None:
        events: list[LivenessEvent] = [
            SessionChanged("AAPL.US", "stock-0", False, WALL, "XNYS"),
            TickWhileClosed("AAPL.US", "stock-0", "XNYS"),
        ]
        plan = fan_out(events, lambda code: ["a", "b"] if code == "AAPL.US" else [])
        assert plan.sessions == {"a": [("AAPL.US", False, WALL)], "b": [("AAPL.US", False, WALL)]}
        assert plan.mismatches == ["stock-0"]
        assert any("closed" in text and "XNYS" in text for text in plan.texts)


spans = st.lists(
    st.tuples(st.floats(0, 2000, allow_nan=False), st.floats(1, 300, allow_nan=False)), max_size=6
).map(lambda xs: [(a, a + d) for a, d in xs])
steps = st.lists(
    st.tuples(st.sampled_from(["tick", "poll", "down", "ack"]), st.floats(0, 50, allow_nan=False)),
    min_size=1,
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(spans=spans, steps=steps, stale=st.floats(1, 60), grace=st.floats(0, 60))
def test_no_stale_or_never_started_while_the_session_is_closed(
    spans: list[tuple[float, float]], steps: list[tuple[str, float]], stale: float, grace: float
) -> None:
    session = windows(*spans)
    live = liveness(session, stale=stale, grace=grace)
    now = 0.0
    live.acknowledged("stock-0", ["AAPL.US"], now=now)
    for what, gap in steps:
        now += gap
        match what:
            case "tick":
                live.ticked("AAPL.US", now)
            case "poll":
                live.poll(now)
            case "down":
                live.connection_down("stock-0", now)
            case _:
                live.acknowledged("stock-0", ["AAPL.US"], now=now)
        is_open = session.is_open(now + WALL)
        for event in live.events():
            if isinstance(event, Stale | NeverStarted):
                assert is_open, f"{event} at {now} while closed"
        state = live.status(now)["AAPL.US"].state
        if what == "poll" and not is_open:
            assert state in ("closed", "ok")
