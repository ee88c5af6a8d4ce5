"""Built-in strategies: ``recorder`` (ticks to a JSON-lines file) and ``console`` (a live view)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path
from typing import Any

import msgspec

from actors.core import normalise
from actors.strategy import Strategy

#: One line of the recorder's file, a JSON object: every field of ``Tick`` (tick_time in ms, prices
#: the vendor's strings, received_ns) but the last, ``sent_ns``, which only the simulator stamps.
RecordedTick = msgspec.defstruct(
    "RecordedTick", [(f.name, f.type) for f in msgspec.structs.fields(normalise.Tick)[:-1]], frozen=True
)


class Recorder(Strategy):
    """Appends one JSON object per tick to ``path``; flushed at least every second and on stop."""

    FLUSH_EVERY_S = 1.0

    def __init__(self, name: str, symbols: Any = (), options: Any = None, **kwargs: Any) -> None:
        super().__init__(name, symbols, options, **kwargs)
        path = self.options.get("path")
        if not path:
            raise ValueError(f"recorder {name!r} needs a path")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("ab")
        self._encode = msgspec.json.Encoder().encode
        self._unflushed = 0
        self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())

    async def on_ticks(self, ticks: list[normalise.Tick]) -> None:
        """Write the batch; the flush loop makes it durable within a second."""
        encode = self._encode
        self._file.write(
            b"".join(encode(RecordedTick(*msgspec.structs.astuple(t)[:-1])) + b"\n" for t in ticks)
        )
        self._unflushed += len(ticks)

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.FLUSH_EVERY_S)
            self.flush()

    def flush(self) -> None:
        """Push written lines to the file."""
        if self._unflushed:
            self._file.flush()
            self._unflushed = 0

    async def on_stop(self) -> None:
        """Flush and close the file."""
        self._flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._flusher
        self.flush()
        self._file.close()


class Console(Strategy):
    """A compact live view: latest price and tick rate per code, printed every ``every_s`` seconds."""

    def __init__(self, name: str, symbols: Any = (), options: Any = None, **kwargs: Any) -> None:
        super().__init__(name, symbols, options, **kwargs)
        self._every = float(self.options.get("every_s", 2.0))
        self._latest: dict[str, normalise.Tick] = {}
        self._counts: dict[str, int] = {}
        self._since = time.monotonic()
        self._printer = asyncio.get_running_loop().create_task(self._print_loop())

    async def on_ticks(self, ticks: list[normalise.Tick]) -> None:
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
