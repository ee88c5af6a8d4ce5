"""A strategy for integration tests: keeps every tick it receives and checks order itself."""

from __future__ import annotations

import asyncio
from typing import Any

from actors.strategy import Strategy
from actors.core.wire import BookTick, Tick


class Collector(Strategy):
    """Collects (code, seq, price) of every tick; ``options.sleep_s`` makes it slow on purpose."""

    def __init__(self, name: str, symbols: Any = (), options: Any = None, **kwargs: Any) -> None:
        super().__init__(name, symbols, options, **kwargs)
        self.seen: dict[str, list[int]] = {}
        self.prices: dict[str, str] = {}
        self.violations: list[str] = []
        self.problems: list[tuple[str, str]] = []
        self.missed_reports = 0
        self.books: dict[str, list[int]] = {}  # code -> depth (bids) of each snapshot
        self.book_seqs: dict[str, list[int]] = {}  # code -> seq of each snapshot

    async def on_ticks(self, ticks: list[Tick]) -> None:
        for t in ticks:
            seqs = self.seen.setdefault(t.code, [])
            if seqs and t.seq <= seqs[-1]:
                self.violations.append(f"{t.code}: seq {t.seq} after {seqs[-1]}")
            seqs.append(t.seq)
            self.prices[t.code] = t.price
            if not isinstance(t.price, str):
                self.violations.append(f"{t.code}: price {t.price!r} is not a string")
        sleep = float(self.options.get("sleep_s", 0.0))
        if sleep:
            await asyncio.sleep(sleep)

    async def on_books(self, books: list[BookTick]) -> None:
        for b in books:
            self.books.setdefault(b.code, []).append(len(b.bids))
            self.book_seqs.setdefault(b.code, []).append(b.seq)

    async def on_problem(self, code: str, reason: str) -> None:
        self.problems.append((code, reason))

    async def on_missed(self, count: int) -> None:
        self.missed_reports += count

    async def collected(self) -> dict[str, Any]:
        """Everything seen so far."""
        return {
            "seen": self.seen,
            "prices": self.prices,
            "violations": self.violations,
            "problems": self.problems,
            "missed_reports": self.missed_reports,
            "books": self.books,
            "book_seqs": self.book_seqs,
        }

    async def do_subscribe(self, codes: list[str], kind: str = "trades") -> Any:
        """Call subscribe from inside the actor; returns the error text instead of raising."""
        try:
            return await self.subscribe(codes, kind)
        except Exception as exc:  # noqa: BLE001 - the test reads the message
            return f"{type(exc).__name__}: {exc}"

