"""The replay figures of scripts/bench.py: ``replay_tps_jsonl`` and ``replay_tps_parquet``.

A tape of ``Mode.replay_ticks`` ticks over 100 codes is written in each format in a temporary directory,
in the same run, then replayed as ``tickvisor replay --speed max`` does (actors.replay.replay_tape through
actors.testing.StrategyHarness, the delivery rules applied) into a strategy that only counts. The rate
is the ticks over the replay's own time (reading the tape included; building the strategy not), the
better of ``REPLAYS`` replays: the first one after writing the tape ran at half the rate or less
(pyarrow's first reads, the writer's garbage).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from actors.core.normalise import Tick
from actors.replay import replay_tape
from actors.strategy import Strategy
from actors.tape import open_writer
from actors.testing import StrategyHarness
from scripts.bench.harness import log
from scripts.bench.modes import Mode

CODES = 100
WRITE_CHUNK = 100_000  # ticks per flush of the writer: a Parquet part each
REPLAYS = 2
T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


class CountingStrategy(Strategy):
    """Counts the ticks it receives."""

    def __init__(self, name: str, symbols: list[str], options: dict[str, Any]) -> None:
        super().__init__(name, symbols, options)
        self.count = 0

    async def on_ticks(self, ticks: list[Tick]) -> None:
        """Count them."""
        self.count += len(ticks)


def write_tape(path: Path, fmt: str, n: int) -> None:
    """``n`` ticks round-robin over ``CODES`` codes, 1 ms apart, each code's seq rising."""
    writer = open_writer(path, fmt, now=time.time())
    for start in range(0, n, WRITE_CHUNK):
        writer.write(
            Tick(f"C{i % CODES}.US", i // CODES + 1, T0_MS + i, "189.2300", "12", "2270.76", 1, 0, 0)
            for i in range(start, min(n, start + WRITE_CHUNK))
        )
        writer.flush(time.time())
    writer.close(time.time())


async def replay_rate(path: Path) -> tuple[float, int]:
    """(ticks/s, ticks the strategy received) of a replay of ``path`` at speed max."""
    async with StrategyHarness(CountingStrategy) as h:
        tally, took = await replay_tape(h, path, pace=None)
        received = h.strategy.count
    if received != tally.ticks:
        raise RuntimeError(f"replay of {path}: {tally.ticks} ticks read, {received} received")
    return tally.ticks / took, received


def phase_replay(mode: Mode, out: dict[str, Any]) -> None:
    """Write and replay a tape in each format; puts ``replay_tps_{jsonl,parquet}`` in ``out``."""
    with tempfile.TemporaryDirectory(prefix="tickvisor-bench-replay-") as tmp:
        tapes = {fmt: Path(tmp) / f"ticks.{fmt}" for fmt in ("jsonl", "parquet")}
        for fmt, path in tapes.items():
            write_tape(path, fmt, mode.replay_ticks)
        for fmt, path in tapes.items():
            rates = []
            for _ in range(REPLAYS):
                tps, received = asyncio.run(replay_rate(path))
                if received != mode.replay_ticks:
                    raise RuntimeError(f"replay of {path}: {received} of {mode.replay_ticks} ticks received")
                rates.append(tps)
            out[f"replay_tps_{fmt}"] = max(rates)
            log(f"replay {fmt}: {mode.replay_ticks} ticks at {', '.join(f'{r:,.0f}' for r in rates)}/s")
