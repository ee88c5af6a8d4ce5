"""Built-in strategies: ``recorder`` (ticks to a tape: JSON lines or Parquet) and ``console`` (live)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path
from typing import Any

from actors.core.errors import ConfigError
from actors.core.normalise import Tick
from actors.strategy import Strategy
from actors.tape import open_writer


class Recorder(Strategy):
    """Records every tick to a tape (``actors.tape``): options ``path``, ``format`` ("jsonl", the default, or
    "parquet"), ``flush_every_s`` (default 1; a SIGKILL loses at most that much) and ``max_file_mb``
    (Parquet: a new file past that size, besides one per UTC day).
    """

    FLUSH_EVERY_S = 1.0

    def __init__(self, name: str, symbols: Any = (), options: Any = None, **kwargs: Any) -> None:
        super().__init__(name, symbols, options, **kwargs)
        path = self.options.get("path")
        if not path:
            raise ConfigError(f"strategies.{name}.path", "a recorder needs a path (the tape file or stem)")
        self.path = Path(path)
        fmt = str(self.options.get("format", "jsonl"))
        self._every = float(self.options.get("flush_every_s", self.FLUSH_EVERY_S))
        if self._every <= 0:
            raise ConfigError(f"strategies.{name}.flush_every_s", f"must be > 0 seconds, not {self._every}")
        try:
            self._writer = open_writer(
                self.path, fmt, now=time.time(), max_file_mb=float(self.options.get("max_file_mb", 256.0))
            )
        except ConfigError as exc:
            raise ConfigError(f"strategies.{name}.format", exc.reason) from None
        self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())

    async def on_ticks(self, ticks: list[Tick]) -> None:
        """Write the batch; the flush loop makes it durable within ``flush_every_s``."""
        self._writer.write(ticks)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self._every)
            self.flush()

    def flush(self) -> None:
        """Make what was written durable (JSON lines: flushed; Parquet: one more part)."""
        self._writer.flush(time.time())

    async def on_stop(self) -> None:
        """Flush and close the tape."""
        self._flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._flusher
        self._writer.close(time.time())


class Console(Strategy):
    """A compact live view: latest price and tick rate per code, printed every ``every_s`` seconds."""

    def __init__(self, name: str, symbols: Any = (), options: Any = None, **kwargs: Any) -> None:
        super().__init__(name, symbols, options, **kwargs)
        self._every = float(self.options.get("every_s", 2.0))
        self._latest: dict[str, Tick] = {}
        self._counts: dict[str, int] = {}
        self._since = time.monotonic()
        self._printer = asyncio.get_running_loop().create_task(self._print_loop())

    async def on_ticks(self, ticks: list[Tick]) -> None:
        """Remember the latest tick and count per code."""
        for t in ticks:
            self._latest[t.code] = t
            self._counts[t.code] = self._counts.get(t.code, 0) + 1

    def render(self) -> str:
        """The current view as text."""
        now = time.monotonic()
        span = max(now - self._since, 1e-9)
        lines = [f"[{self.name}] {len(self._latest)} codes, {sum(self._counts.values()) / span:.1f} ticks/s"]
        for code in sorted(self._latest):
            t = self._latest[code]
            lines.append(
                f"  {code:<12} {t.price:>14}  seq {t.seq:<10} {self._counts.get(code, 0) / span:6.1f}/s"
            )
        self._counts = dict.fromkeys(self._counts, 0)
        self._since = now
        return "\n".join(lines)

    async def _print_loop(self) -> None:
        while True:
            await asyncio.sleep(self._every)
            print(self.render(), flush=True)  # noqa: T201 - printing is this strategy's job
            sys.stdout.flush()

    async def on_stop(self) -> None:
        """Stop printing."""
        self._printer.cancel()


BUILTIN: dict[str, type[Strategy]] = {"recorder": Recorder, "console": Console}
