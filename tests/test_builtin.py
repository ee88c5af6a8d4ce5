"""Built-in strategies and the Strategy base class's delivery, in-process (no Ray runtime needed:
a Strategy without a registry is a plain object on the test's event loop).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import msgspec

from actors.builtin import Console, Recorder
from actors.core.normalise import Tick
from actors.strategy import Strategy
from actors.testing import StrategyHarness

encode = msgspec.msgpack.Encoder().encode
#: A generous bound on the wait for the recorder's periodic flush: only a failure waits it out.
FLUSH_WAIT_S = 30 * Recorder.FLUSH_EVERY_S


def ticks(code: str, seqs: range | list[int], price: str = "189.2300") -> list[Tick]:
    return [Tick(code, s, 1_700_000_000_000 + s, price, "10", "1892.3", 1, 5) for s in seqs]


class Keeper(Strategy):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.got: list[tuple[str, int]] = []
        self.missed_reported = 0

    async def on_ticks(self, batch: list[Tick]) -> None:
        self.got.extend((t.code, t.seq) for t in batch)

    async def on_missed(self, count: int) -> None:
        self.missed_reported += count


async def test_recorder_writes_exact_fields_and_flushes_on_stop(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "tape.jsonl"
    # Through the public harness, as a user's own test would drive it; its exit runs on_stop.
    async with StrategyHarness(Recorder, name="tape", options={"path": str(path)}) as h:
        await h.feed(ticks("AAPL.US", [1, 2]) + ticks("EURUSD", [7], "1.08350"))
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows == [
        {
            "code": "AAPL.US",
            "seq": 1,
            "tick_time": 1_700_000_000_001,
            "price": "189.2300",
            "volume": "10",
            "turnover": "1892.3",
            "trade_direction": 1,
            "received_ns": 5,
        },
        {
            "code": "AAPL.US",
            "seq": 2,
            "tick_time": 1_700_000_000_002,
            "price": "189.2300",
            "volume": "10",
            "turnover": "1892.3",
            "trade_direction": 1,
            "received_ns": 5,
        },
        {
            "code": "EURUSD",
            "seq": 7,
            "tick_time": 1_700_000_000_007,
            "price": "1.08350",
            "volume": "10",
            "turnover": "1892.3",
            "trade_direction": 1,
            "received_ns": 5,
        },
    ]


class WatchedRecorder(Recorder):
    """A Recorder that says when one of its flushes has left a line in its file."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.flushed = asyncio.Event()

    def flush(self) -> None:
        super().flush()
        if self.path.exists() and b"\n" in self.path.read_bytes():
            self.flushed.set()


async def test_recorder_flushes_periodically_while_running(tmp_path: Path) -> None:
    path = tmp_path / "tape.jsonl"
    rec = WatchedRecorder("tape", options={"path": str(path)})
    await rec.deliver("on_ticks", encode(ticks("AAPL.US", [1])))
    await rec.wait_idle()
    # The flush loop's own flush, not the one on stop: the recorder is still running here.
    await asyncio.wait_for(rec.flushed.wait(), FLUSH_WAIT_S)
    assert path.read_text().count("\n") == 1
    await rec.stop()


async def test_console_renders_latest_price_per_code() -> None:
    async with StrategyHarness(Console, name="view", options={"every_s": 60}) as h:
        await h.feed(ticks("AAPL.US", [1, 2], "190.01") + ticks("BTCUSDT", [3], "67000.5"))
        text = h.strategy.render()
    assert "2 codes" in text
    assert "190.01" in text
    assert "67000.5" in text


async def test_batches_handed_over_by_deliver_keep_their_order() -> None:
    """Batches come over one ordered channel per decoder now (actors/channel.py); ``deliver`` (the
    Ray-call way in, for tools and tests) queues them as they come.
    """
    s = Keeper("k")
    for n in range(1, 6):
        await s.deliver("on_ticks", encode(ticks("A", [n])))
    await s.wait_idle()
    assert s.got == [("A", n) for n in range(1, 6)]
    stats = await s.statistics()
    assert stats.out_of_order == 0
    await s.stop()


async def test_a_full_queue_drops_the_oldest_batch_and_reports_it() -> None:
    s = Keeper("k", queue_batches=2)
    # A future that never completes stands in for the drain task: nothing drains until the real one.
    s._drain_task = asyncio.get_running_loop().create_future()  # type: ignore[assignment]
    for n in range(1, 5):
        await s.deliver("on_ticks", encode(ticks("A", [n])))
    s._drain_task = asyncio.get_running_loop().create_task(s._drain())
    await s.wait_idle()
    assert s.got[-1] == ("A", 4)
    assert len(s.got) < 4
    stats = await s.statistics()
    assert stats.missed == 4 - len(s.got) == s.missed_reported
    await s.stop()


async def test_duplicates_never_reach_on_ticks() -> None:
    s = Keeper("k")
    await s.deliver("on_ticks", encode(ticks("A", [1, 2, 3])))
    await s.deliver("on_ticks", encode(ticks("A", [3, 2, 4])))
    await s.wait_idle()
    assert s.got == [("A", 1), ("A", 2), ("A", 3), ("A", 4)]
    assert (await s.statistics()).out_of_order == 2
    await s.stop()
