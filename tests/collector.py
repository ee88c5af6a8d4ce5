"""A strategy for integration tests: keeps every tick it receives and checks order itself."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

from actors.core.normalise import BookTick, Tick
from actors.strategy import Strategy


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
        self.health: list[tuple[str, str, float]] = []  # ("stale" | "recovered", code, silent_for_s)
        self.sessions: list[tuple[str, bool, float]] = []  # (code, open, at) of each on_session
        self._times: dict[str, int] = {}  # code -> tick_time of the last tick

    async def on_ticks(self, ticks: list[Tick]) -> None:
        for t in ticks:
            seqs = self.seen.setdefault(t.code, [])
            # A lower seq is a violation unless tick_time moved on: then the vendor's counter was reset.
            if seqs and (t.seq == seqs[-1] or (t.seq < seqs[-1] and t.tick_time < self._times[t.code])):
                self.violations.append(f"{t.code}: seq {t.seq} after {seqs[-1]}")
            seqs.append(t.seq)
            self._times[t.code] = t.tick_time
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

    async def on_stale(self, code: str, silent_for_s: float) -> None:
        self.health.append(("stale", code, silent_for_s))

    async def on_recovered(self, code: str, silent_for_s: float) -> None:
        self.health.append(("recovered", code, silent_for_s))

    async def on_session(self, code: str, open: bool, at: float) -> None:  # noqa: A002
        self.sessions.append((code, open, at))

    async def on_missed(self, count: int) -> None:
        self.missed_reports += count

    async def collected(self) -> dict[str, Any]:
        """Everything seen so far, copied: Ray serializes a result in another thread than the event loop's,
        which meanwhile goes on appending to these (a dict that grows while Ray packs it comes out
        corrupt: "unpack(b) received extra data").
        """
        return copy.deepcopy(
            {
                "seen": self.seen,
                "times": self._times,
                "prices": self.prices,
                "violations": self.violations,
                "problems": self.problems,
                "missed_reports": self.missed_reports,
                "books": self.books,
                "book_seqs": self.book_seqs,
                "health": self.health,
                "sessions": self.sessions,
            }
        )

    async def ledger(self) -> dict[str, Any]:
        """One consistent snapshot (no await inside) of what was seen and what was counted as missed."""
        return {
            "last": {code: seqs[-1] for code, seqs in self.seen.items()},
            "seen": sum(len(seqs) for seqs in self.seen.values()),
            "missed": self._delivery.missed,
            "missed_reports": self.missed_reports,
            "out_of_order": self._delivery.out_of_order,
        }

    async def set_sleep(self, seconds: float) -> None:
        """Change how long each ``on_ticks`` call takes (``options.sleep_s``)."""
        self.options["sleep_s"] = seconds

    async def freeze(self, fifo: str, marker: str) -> None:
        """Block this actor's event loop until a byte arrives on the named pipe ``fifo``; ``marker`` is
        created first. Meanwhile no delivery is taken: to a decoder this is a strategy far too slow.
        """
        Path(marker).touch()  # noqa: ASYNC240 - blocking the loop is the point
        with open(fifo, "rb") as gate:  # noqa: ASYNC230, PTH123 - blocking the loop is the point
            gate.read(1)

    async def do_subscribe(self, codes: list[str], kind: str = "trades") -> Any:
        """Call subscribe from inside the actor; returns the error text instead of raising."""
        try:
            return await self.subscribe(codes, kind)
        except Exception as exc:  # noqa: BLE001 - the test reads the message
            return f"{type(exc).__name__}: {exc}"

    async def do_unsubscribe(self, codes: list[str], kind: str = "trades") -> Any:
        """Call unsubscribe from inside the actor; returns the error text instead of raising."""
        try:
            return await self.unsubscribe(codes, kind)
        except Exception as exc:  # noqa: BLE001 - the test reads the message
            return f"{type(exc).__name__}: {exc}"


class SlowHandler(Strategy):
    """A strategy whose ``on_ticks`` awaits a gate: a slow handler. It logs the order of its hooks.

    The gate opens on ``release()``, or by itself once ``stop()`` has begun: then a batch is still
    inside ``on_ticks`` when the job stops, whatever the timing of the machine.
    """

    def __init__(self, name: str, symbols: Any = (), options: Any = None, **kwargs: Any) -> None:
        super().__init__(name, symbols, options, **kwargs)
        self.log: list[str] = []
        self.begun = asyncio.Event()
        self._gate = asyncio.Event()

    async def on_ticks(self, ticks: list[Tick]) -> None:
        self.log.append(f"on_ticks begun ({len(ticks)} ticks)")
        self.begun.set()
        try:
            await self._gate.wait()
        except asyncio.CancelledError:
            self.log.append("on_ticks cancelled")
            raise
        self.log.append("on_ticks done")

    async def on_stop(self) -> None:
        self.log.append("on_stop")

    async def stop(self) -> None:
        self.log.append("stop")
        asyncio.get_running_loop().call_soon(self._gate.set)  # the handler ends only after stop began
        await super().stop()

    async def release(self) -> None:
        """Let the batch in ``on_ticks`` finish."""
        self._gate.set()

    async def hook_log(self) -> list[str]:
        """The hooks in the order they ran."""
        return list(self.log)


class Journal(Strategy):
    """Appends every tick it gets (``t CODE SEQ``), every ``on_missed`` count (``m COUNT``) and every
    process start (``s PID``) to the file ``options.path``: the record outlives a SIGKILL, so a test
    can check order and accounting across restarts of any actor, this one included.
    """

    def __init__(self, name: str, symbols: Any = (), options: Any = None, **kwargs: Any) -> None:
        super().__init__(name, symbols, options, **kwargs)
        self._file = open(self.options["path"], "a", buffering=1)  # noqa: PTH123, SIM115 - line-buffered

    async def on_start(self) -> None:
        import os

        self._file.write(f"s {os.getpid()}\n")

    async def on_ticks(self, ticks: list[Tick]) -> None:
        self._file.write("".join(f"t {t.code} {t.seq}\n" for t in ticks))

    async def on_missed(self, count: int) -> None:
        self._file.write(f"m {count}\n")
