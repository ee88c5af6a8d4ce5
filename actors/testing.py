"""Test your strategy without Ray or a feed: ``StrategyHarness`` runs it in-process on your event loop.

Example (a pytest test in your own project; pytest-asyncio or ``asyncio.run`` drives it)::

    from actors.testing import StrategyHarness
    from desk.vwap import Vwap

    async def test_vwap_of_two_trades() -> None:
        async with StrategyHarness(Vwap, symbols=["AAPL.US"], options={"window": 2}) as h:
            await h.trade("AAPL.US", price="10", volume="1")
            await h.trade("AAPL.US", price="20", volume="3")
            assert h.strategy.vwap["AAPL.US"] == Decimal("17.5")
            assert h.holdings() == {"AAPL.US": 1}

The ticks go through the same delivery rules as in a job (per-code order; a duplicate or older seq is
kept from ``on_ticks``), and the hooks run as a job runs them. ``subscribe`` and ``unsubscribe`` are answered
here with the registry's rules (refcounts per kind; an empty list, an invalid code, or a code not held is
refused with ``SubscriptionRefused``), and logged in ``calls``. ``h.clock`` is the strategy's
``self.clock()``: set or advance it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from decimal import Decimal
from operator import attrgetter
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, TypeVar

import msgspec

from actors.core.codes import endpoint_of
from actors.core.delivery import BOOKS, TICKS, Batch
from actors.core.errors import InvalidCode, SubscriptionRefused
from actors.core.normalise import BookTick, Tick
from actors.strategy import Strategy, Wiring, build

S = TypeVar("S", bound=Strategy)
_tick_time = attrgetter("tick_time")

__all__ = ["ManualClock", "StrategyHarness"]


class ManualClock:
    """A clock that moves only when told: ``clock()`` reads it, ``advance(s)`` and ``set(t)`` move it."""

    def __init__(self, start: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self.now = start

    def __call__(self) -> float:
        """The time now."""
        return self.now

    def advance(self, seconds: float) -> float:
        """Move forward by ``seconds``; returns the new time."""
        if seconds < 0:
            raise ValueError(f"a clock does not go back: advance({seconds})")
        self.now += seconds
        return self.now

    def set(self, t: float) -> None:
        """Jump to ``t`` (seconds since the epoch)."""
        self.now = t


class _Call:
    """Stands in for one method of the registry's actor handle: ``await method.remote(...)``."""

    def __init__(self, fn: Any) -> None:
        self._fn = fn

    async def remote(self, *args: Any) -> Any:
        return self._fn(*args)


class _Registry:
    """The registry's answers to one strategy, in-process (refcounts per kind, the same refusals)."""

    def __init__(self) -> None:
        self.held: dict[str, Counter[str]] = {"trades": Counter(), "book": Counter()}
        self.calls: list[tuple[str, str, tuple[str, ...]]] = []
        self.subscribe = _Call(self._subscribe)
        self.unsubscribe = _Call(self._unsubscribe)
        self.holds_anything = _Call(lambda _name: any(self.held.values()))

    def _kind(self, kind: str) -> Counter[str]:
        if kind not in self.held:
            raise SubscriptionRefused({"*": f"unknown kind {kind!r}; use 'trades' or 'book'"})
        return self.held[kind]

    def _subscribe(self, _name: str, codes: list[str], kind: str) -> dict[str, int]:
        held = self._kind(kind)
        if not codes:
            raise SubscriptionRefused({"*": "an empty list of codes: name at least one code"})
        problems = {}
        for code in codes:
            try:
                endpoint_of(code)
            except InvalidCode as exc:
                problems[str(code)] = str(exc)
        if problems:
            raise SubscriptionRefused(problems)
        self.calls.append(("subscribe", kind, tuple(codes)))
        held.update(codes)  # one reference per code named, as the registry's Holdings counts
        return dict(held)

    def _unsubscribe(self, _name: str, codes: list[str], kind: str) -> dict[str, int]:
        held = self._kind(kind)
        asked = Counter(codes)
        problems = {c: "not held by this strategy" for c, n in asked.items() if held[c] < n}
        if not codes or problems:
            raise SubscriptionRefused(problems or {"*": "an empty list of codes: name at least one code"})
        self.calls.append(("unsubscribe", kind, tuple(codes)))
        held.subtract(asked)
        for code in [c for c, n in held.items() if n <= 0]:
            del held[code]
        return dict(held)


class StrategyHarness(Generic[S]):
    """Runs one strategy in-process: build it, start it, feed it, tell it things, stop it.

    Args:
        cls: your Strategy subclass.
        name: the strategy's name (default: the class name in lower case).
        symbols: the configured symbols, subscribed at ``start`` as a job does.
        options: the ``options`` table of its configuration.
        clock: the strategy's ``self.clock``; default a ``ManualClock`` at 2026-01-01T00:00:00Z.
        queue_batches: as ``[feed] strategy_queue_batches``.

    Use it as ``async with StrategyHarness(...) as h`` (start, then stop with ``on_stop`` at the end), or
    call ``start()`` and ``stop()`` yourself.

    """

    def __init__(
        self,
        cls: type[S],
        *,
        name: str | None = None,
        symbols: Iterable[str] = (),
        options: Mapping[str, Any] | None = None,
        clock: ManualClock | None = None,
        queue_batches: int = 64,
    ) -> None:
        self.clock = clock if clock is not None else ManualClock()
        self.registry = _Registry()
        self._symbols = list(symbols)
        self._options = dict(options or {})
        self._name = name or cls.__name__.lower()
        self._cls = cls
        self._queue = queue_batches
        self._strategy: S | None = None
        self._seq: dict[str, int] = {}
        self._encode = msgspec.msgpack.Encoder().encode

    @property
    def strategy(self) -> S:
        """The strategy under test (after ``start``)."""
        if self._strategy is None:
            raise RuntimeError(
                "the harness has not started: use 'async with StrategyHarness(...)' or start()"
            )
        return self._strategy

    async def start(self) -> S:
        """Build the strategy, subscribe its symbols and run ``on_start``; returns the strategy."""
        wiring = Wiring(self.registry, None, self._queue, self.clock)
        self._strategy = build(self._cls, self._name, self._symbols, self._options, wiring)
        await self._strategy.start()
        return self._strategy

    async def stop(self) -> None:
        """Deliver what is queued, then run ``on_stop``."""
        await self.strategy.stop()

    async def __aenter__(self) -> StrategyHarness[S]:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # --- what a job would send ------------------------------------------------------------------------

    async def feed(self, ticks: Iterable[Tick], *, missed: int = 0) -> None:
        """Deliver ``ticks`` as one batch and wait until the hooks have run; ``missed`` ticks are reported
        lost before it (``on_missed``).
        """
        batch = list(ticks)
        if batch or missed:
            # As ``Strategy.deliver``, without decoding the payload once more only to count it.
            self.strategy._enqueue(Batch(TICKS, [self._encode(batch)], len(batch)), missed)  # noqa: SLF001
        await self._settle()

    async def feed_books(self, books: Iterable[BookTick]) -> None:
        """Deliver order-book snapshots as one batch and wait until ``on_books`` has run."""
        await self.strategy.deliver(BOOKS, self._encode(list(books)))
        await self._settle()

    async def trade(
        self,
        code: str,
        price: str = "100",
        volume: str = "1",
        *,
        seq: int | None = None,
        tick_time_ms: int | None = None,
        turnover: str | None = None,
        trade_direction: int = 0,
    ) -> Tick:
        """Deliver one trade built from keywords (seq: the code's next; time: the clock) and return it."""
        tick = self.tick(
            code,
            price,
            volume,
            seq=seq,
            tick_time_ms=tick_time_ms,
            turnover=turnover,
            trade_direction=trade_direction,
        )
        await self.feed([tick])
        return tick

    def tick(
        self,
        code: str,
        price: str = "100",
        volume: str = "1",
        *,
        seq: int | None = None,
        tick_time_ms: int | None = None,
        turnover: str | None = None,
        trade_direction: int = 0,
    ) -> Tick:
        """A trade built from keywords, not delivered (to build a batch for ``feed``)."""
        seq = self._next_seq(code) if seq is None else seq
        self._seq[code] = max(seq, self._seq.get(code, 0))
        now_ms = round(self.clock() * 1000) if tick_time_ms is None else tick_time_ms
        turnover = turnover if turnover is not None else str(Decimal(price) * Decimal(volume))
        return Tick(code, seq, now_ms, price, volume, turnover, trade_direction, now_ms * 1_000_000)

    async def book(
        self,
        code: str,
        bids: Iterable[tuple[str, str]] = (),
        asks: Iterable[tuple[str, str]] = (),
        *,
        seq: int | None = None,
    ) -> BookTick:
        """Deliver one order-book snapshot (levels ``(price, volume)``, best first) and return it."""
        seq = self._next_seq(code) if seq is None else seq
        self._seq[code] = max(seq, self._seq.get(code, 0))
        now_ms = round(self.clock() * 1000)
        snapshot = BookTick(code, seq, now_ms, tuple(bids), tuple(asks), now_ms * 1_000_000)
        await self.feed_books([snapshot])
        return snapshot

    async def replay(self, path: str | Path, *, codes: Iterable[str] | None = None, batch: int = 1000) -> int:
        """Deliver a recorded tape (``actors.tape``) in batches of ``batch`` in recorded order, the clock
        following the tape's tick times; returns the ticks delivered. ``tickvisor replay`` (actors.replay)
        does the same with pacing, progress and a summary.
        """
        from actors.tape import read_tape  # noqa: PLC0415 - pyarrow only when a tape is read

        wanted = set(codes) if codes is not None else None
        count = 0
        for chunk in read_tape(path):
            ticks = chunk if wanted is None else [t for t in chunk if t.code in wanted]
            for i in range(0, len(ticks), batch):
                part = ticks[i : i + batch]
                await self.feed_at_tape_time(part)
                count += len(part)
        return count

    async def feed_at_tape_time(self, ticks: list[Tick]) -> None:
        """Set the clock to the latest tick time of ``ticks`` (it never goes back), then ``feed`` them:
        what replay does per batch.
        """
        if ticks:
            self.clock.set(max(self.clock(), max(map(_tick_time, ticks)) / 1000))
        await self.feed(ticks)

    async def stale(self, code: str, silent_for_s: float) -> None:
        """Tell the strategy ``code`` is stale (``on_stale``), as the registry does."""
        await self.strategy.code_health("stale", code, silent_for_s)

    async def recovered(self, code: str, silent_for_s: float) -> None:
        """Tell the strategy ``code`` recovered (``on_recovered``)."""
        await self.strategy.code_health("recovered", code, silent_for_s)

    async def session(self, code: str, open: bool, at: float) -> None:  # noqa: A002, FBT001
        """Tell the strategy the session of ``code`` opened or closed at ``at`` (``on_session``)."""
        await self.strategy.session_many([(code, open, at)])

    async def problem(self, code: str, reason: str) -> None:
        """Tell the strategy about a problem with ``code`` (``on_problem``)."""
        await self.strategy.problem(code, reason)

    async def missed(self, count: int) -> None:
        """Tell the strategy ``count`` ticks were dropped (``on_missed``), as delivery does."""
        await self.feed([], missed=count)

    # --- what the strategy did -----------------------------------------------------------------------

    def holdings(self, kind: str = "trades") -> dict[str, int]:
        """The codes the strategy holds now, with their refcounts (``kind`` "trades" or "book")."""
        return dict(self.registry.held[kind])

    @property
    def calls(self) -> list[tuple[str, str, tuple[str, ...]]]:
        """Every accepted ``subscribe``/``unsubscribe`` in order: ``(call, kind, codes)``."""
        return self.registry.calls

    async def _settle(self) -> None:
        if not await self.strategy.wait_idle(60.0):
            raise TimeoutError(f"strategy {self._name}: its hooks did not finish within 60 s")

    def _next_seq(self, code: str) -> int:
        return self._seq.get(code, 0) + 1
