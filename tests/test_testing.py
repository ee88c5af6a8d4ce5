"""The public test harness (actors.testing) and the strategy's construction without the **kwargs trap."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from actors.core.errors import SubscriptionRefused
from actors.core.normalise import BookTick, Tick
from actors.strategy import Strategy, check_init, hosted
from actors.tape import JsonlWriter
from actors.testing import ManualClock, StrategyHarness


class Vwap(Strategy):
    """A user strategy as the README writes it: its own __init__, no **kwargs."""

    def __init__(self, name: str, symbols: list[str], options: dict[str, Any]) -> None:
        super().__init__(name, symbols, options)
        self.window_s = float(self.options.get("window_s", 60))
        self.trades: dict[str, list[tuple[float, Decimal, Decimal]]] = {}
        self.events: list[tuple[str, ...]] = []

    async def on_start(self) -> None:
        await self.subscribe(["XAUUSD"], kind="book")

    async def on_ticks(self, ticks: list[Tick]) -> None:
        now = self.clock()
        for t in ticks:
            keep = [x for x in self.trades.get(t.code, []) if now - x[0] < self.window_s]
            self.trades[t.code] = [*keep, (now, Decimal(t.price), Decimal(t.volume))]

    def vwap(self, code: str) -> Decimal:
        rows = self.trades[code]
        return sum((p * v for _, p, v in rows), Decimal(0)) / sum((v for _, _, v in rows), Decimal(0))

    async def on_books(self, books: list[BookTick]) -> None:
        self.events += [("book", b.code, b.bids[0][0]) for b in books]

    async def on_stale(self, code: str, silent_for_s: float) -> None:
        self.events.append(("stale", code, str(silent_for_s)))

    async def on_recovered(self, code: str, silent_for_s: float) -> None:
        self.events.append(("recovered", code, str(silent_for_s)))

    async def on_problem(self, code: str, reason: str) -> None:
        self.events.append(("problem", code, reason))

    async def on_session(self, code: str, open: bool, at: float) -> None:  # noqa: A002
        self.events.append(("session", code, "open" if open else "closed", str(at)))

    async def on_missed(self, count: int) -> None:
        self.events.append(("missed", str(count)))

    async def on_stop(self) -> None:
        self.events.append(("stop",))


async def test_a_strategy_is_fed_told_and_stopped_in_process() -> None:
    clock = ManualClock(1_800_000_000.0)
    async with StrategyHarness(Vwap, symbols=["AAPL.US"], options={"window_s": 10}, clock=clock) as h:
        assert h.holdings() == {"AAPL.US": 1}
        assert h.holdings("book") == {"XAUUSD": 1}
        assert h.calls == [("subscribe", "trades", ("AAPL.US",)), ("subscribe", "book", ("XAUUSD",))]
        first = await h.trade("AAPL.US", price="10", volume="1")
        assert (first.seq, first.tick_time, first.turnover) == (1, 1_800_000_000_000, "10")
        clock.advance(5)
        await h.trade("AAPL.US", price="20", volume="3")
        assert h.strategy.vwap("AAPL.US") == Decimal("17.5")
        clock.advance(6)  # the first trade leaves the 10-s window
        await h.trade("AAPL.US", price="30.25", volume="1")
        assert h.strategy.vwap("AAPL.US") == Decimal("22.5625")
        await h.book("XAUUSD", bids=[("2400.10", "5")], asks=[("2400.30", "2")])
        await h.stale("AAPL.US", 61.5)
        await h.recovered("AAPL.US", 70.0)
        await h.problem("AAPL.US", "never started")
        await h.session("AAPL.US", False, 1_800_000_100.0)
        await h.missed(3)
        strategy = h.strategy
    assert strategy.events == [
        ("book", "XAUUSD", "2400.10"),
        ("stale", "AAPL.US", "61.5"),
        ("recovered", "AAPL.US", "70.0"),
        ("problem", "AAPL.US", "never started"),
        ("session", "AAPL.US", "closed", "1800000100.0"),
        ("missed", "3"),
        ("stop",),
    ]


async def test_delivery_keeps_per_code_order_and_drops_duplicates_as_a_job_does() -> None:
    async with StrategyHarness(Vwap) as h:
        batch = [h.tick("AAPL.US", seq=5), h.tick("AAPL.US", seq=6), h.tick("EURUSD", seq=1)]
        await h.feed(batch)
        older = h.clock() * 1000 - 1000  # an older seq with an older time: a replay, not a counter reset
        await h.feed(
            [
                h.tick("AAPL.US", seq=6),
                h.tick("AAPL.US", seq=4, tick_time_ms=round(older)),
                h.tick("AAPL.US", seq=7),
            ]
        )
        assert [len(v) for v in h.strategy.trades.values()] == [3, 1]
        stats = await h.strategy.statistics()
        assert stats.out_of_order == 2
        assert stats.ticks == 4


async def test_subscriptions_are_refused_as_the_registry_refuses_them() -> None:
    async with StrategyHarness(Vwap) as h:
        with pytest.raises(SubscriptionRefused) as err:
            await h.strategy.subscribe(["AAPL.US", "aapl"])
        assert set(err.value.problems) == {"aapl"}
        assert "did you mean AAPL.US" in str(err.value) or "AAPL.US" in err.value.problems["aapl"]
        with pytest.raises(SubscriptionRefused, match="empty list"):
            await h.strategy.subscribe([])
        with pytest.raises(SubscriptionRefused, match="not held"):
            await h.strategy.unsubscribe(["TSLA.US"])
        with pytest.raises(TypeError, match="not the string"):
            await h.strategy.subscribe("AAPL.US")  # type: ignore[arg-type]
        await h.strategy.subscribe(["TSLA.US", "TSLA.US"])
        assert h.holdings() == {"TSLA.US": 2}
        await h.strategy.unsubscribe(["TSLA.US"])
        assert h.holdings() == {"TSLA.US": 1}


async def test_replay_through_the_harness_delivers_the_tape_in_order(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    recorded = [
        Tick("AAPL.US", s, 1_800_000_000_000 + s * 1000, f"{s}.5", "2", "1", 0, 9) for s in range(1, 251)
    ]
    recorded += [Tick("EURUSD", s, 1_800_000_100_000 + s, "1.08350", "0", "0", 0, 9) for s in range(1, 11)]
    writer = JsonlWriter(path)
    writer.write(recorded)
    writer.close(0.0)

    class Keep(Strategy):
        def __init__(self, name: str, symbols: list[str], options: dict[str, Any]) -> None:
            super().__init__(name, symbols, options)
            self.got: list[Tick] = []

        async def on_ticks(self, ticks: list[Tick]) -> None:
            self.got += ticks

    async with StrategyHarness(Keep) as h:
        assert await h.replay(path, batch=64) == 260
        assert h.strategy.got == recorded
        assert h.clock() == 1_800_000_250.0  # the latest tick time seen
    async with StrategyHarness(Keep) as h:
        assert await h.replay(path, codes=["EURUSD"]) == 10
        assert [t.code for t in h.strategy.got] == ["EURUSD"] * 10


def test_the_harness_says_when_it_has_not_started() -> None:
    with pytest.raises(RuntimeError, match="has not started"):
        _ = StrategyHarness(Vwap).strategy


async def test_hosted_wires_a_class_whose_init_takes_no_kwargs() -> None:
    registry = object()
    s = hosted(Vwap)("v", ["AAPL.US"], {"window_s": 3}, registry=registry, supervisor=None, queue_batches=8)
    assert isinstance(s, Vwap)
    assert type(s).__name__ == "Vwap"
    assert s._registry is registry
    assert s._delivery._max == 8
    assert s.window_s == 3.0
    await s.stop()


def test_an_init_that_cannot_take_the_arguments_is_refused_with_what_to_write() -> None:
    class NoArgs(Strategy):
        def __init__(self) -> None:
            super().__init__("x")

    assert check_init(Vwap, "desk.vwap:Vwap") is None
    why = check_init(NoArgs, "desk:NoArgs")
    assert why is not None
    assert why.startswith("desk:NoArgs.__init__ cannot take (name, symbols, options)")
    assert "super().__init__(name, symbols, options)" in why


async def test_on_session_does_nothing_by_default_and_a_raising_one_is_logged() -> None:
    class Raising(Strategy):
        async def on_session(self, code: str, open: bool, at: float) -> None:  # noqa: A002
            raise RuntimeError(code)

    async with StrategyHarness(Strategy) as h:
        await h.session("AAPL.US", True, 1.0)  # the default: nothing
    async with StrategyHarness(Raising) as r:
        await r.session("AAPL.US", True, 1.0)  # logged, not raised into the registry
