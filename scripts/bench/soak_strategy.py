"""The checking strategy of scripts/soak.py: it keeps every tick it is handed until the soak drains it.

The soak's own process does the checking (duplicates, order, gaps against the fault windows), so the
record survives a SIGKILL of this strategy: only what arrived since the last drain dies with it. Stale
reports carry the wall time they arrived, which the soak compares with its session's closed stretches.
"""

from __future__ import annotations

import time
from typing import Any

from actors.core.normalise import Tick
from actors.strategy import Strategy


class SoakChecker(Strategy):
    """Buffers ``(code, seq, tick_time_ms)`` of every tick, every problem and missed report, every
    session change and every stale report (with the wall time it arrived).
    """

    def __init__(self, name: str, symbols: Any = (), options: Any = None, **kwargs: Any) -> None:
        super().__init__(name, symbols, options, **kwargs)
        self._buffer: list[tuple[str, int, int]] = []
        self._problems: list[tuple[str, str]] = []
        self._missed_reported = 0
        self._sessions: list[tuple[str, bool, float]] = []
        self._stale: list[tuple[str, float, float]] = []

    async def on_ticks(self, ticks: list[Tick]) -> None:
        self._buffer.extend((t.code, t.seq, t.tick_time) for t in ticks)

    async def on_problem(self, code: str, reason: str) -> None:
        self._problems.append((code, reason))

    async def on_missed(self, count: int) -> None:
        self._missed_reported += count

    async def on_session(self, code: str, open: bool, at: float) -> None:  # noqa: A002, FBT001 - the hook's names
        self._sessions.append((code, open, at))

    async def on_stale(self, code: str, silent_for_s: float) -> None:
        self._stale.append((code, silent_for_s, time.time()))

    async def drain(self) -> dict[str, Any]:
        """What arrived since the last drain, in arrival order, and the problems reported meanwhile."""
        ticks, self._buffer = self._buffer, []
        problems, self._problems = self._problems, []
        missed, self._missed_reported = self._missed_reported, 0
        sessions, self._sessions = self._sessions, []
        stale, self._stale = self._stale, []
        return {"ticks": ticks, "problems": problems, "missed": missed, "sessions": sessions, "stale": stale}

    async def change(self, add: list[str], remove: list[str]) -> str:
        """Subscribe ``add`` and unsubscribe ``remove`` from inside the strategy; '' or the error text."""
        try:
            if add:
                await self.subscribe(add)
            if remove:
                await self.unsubscribe(remove)
        except Exception as exc:  # noqa: BLE001 - the soak reports it
            return f"{type(exc).__name__}: {exc}"
        return ""
