"""The strategy scripts/bench.py runs inside tickvisor: it counts, checks order and times ticks.

It does the per-tick work of scripts.bench.count.TickCounter, like every other benchmarked consumer.
Latency is measured from the simulator's send time when the tick carries it (``sent_ns``, which
``actors.core.normalise.Tick`` does not have today: the decoder drops the simulator's extra field).
Without it, the send time is estimated from ``tick_time`` (the simulator sets it to
``sent_ns // 10**6``) as the middle of its millisecond, so each sample is exact only to +-0.5 ms;
``received_ns`` (the connection's read time) gives the exact read-to-strategy part.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from array import array
from typing import Any

from actors.core.normalise import Tick
from actors.strategy import Strategy
from scripts.bench.count import TickCounter, percentiles_ms

MS_NS = 1_000_000


class BenchStrategy(Strategy):
    """Counts ticks and checks their order; records latencies while ``bench_reset(latency=True)``."""

    def __init__(self, name: str, symbols: Any = (), options: Any = None, **kwargs: Any) -> None:
        super().__init__(name, symbols, options, **kwargs)
        self.counter = TickCounter()
        self.read_ns = array("q")  # connection read -> strategy, exact
        self.exact = False  # True once a tick carried sent_ns
        # the base class's counters at bench_reset
        self.base_missed = self.base_out_of_order = self.base_batches = 0
        # Per batch while timing: arrival (time_ns), ticks, worst send-to-here and read-to-here ns, this
        # thread's and this process's CPU ns (see bench_trace).
        self.trace = array("q")
        # bench_wait's, while one waits: the count that ends it, and its event
        self.waiting: tuple[int, asyncio.Event] | None = None

    async def on_ticks(self, ticks: list[Tick]) -> None:
        counter = self.counter
        counter.add_batch(ticks, time.monotonic())
        if self.waiting is not None:
            self._check_waiting()
        if counter.record_latency:
            now_ns = time.time_ns()
            worst = worst_read = 0
            for t in ticks:
                sent = getattr(t, "sent_ns", 0)
                if sent:
                    self.exact = True
                else:
                    sent = t.tick_time * MS_NS + MS_NS // 2
                counter.latency(sent, now_ns)
                worst = max(worst, now_ns - sent)
                if t.received_ns:
                    self.read_ns.append(now_ns - t.received_ns)
                    worst_read = max(worst_read, now_ns - t.received_ns)
            cpu = (time.thread_time_ns(), time.process_time_ns())
            self.trace.extend((now_ns, len(ticks), worst, worst_read, *cpu))

    async def bench_reset(self, latency: bool = False) -> None:  # noqa: FBT001, FBT002 - a Ray method
        """Start a new measurement."""
        self.counter.reset(record_latency=latency)
        self.read_ns = array("q")
        self.trace = array("q")
        self.exact = False
        stats = await self.statistics()
        self.base_missed, self.base_out_of_order = stats.missed, stats.out_of_order
        self.base_batches = stats.batches

    async def on_missed(self, count: int) -> None:
        await super().on_missed(count)
        self._check_waiting()

    def _accounted(self) -> int:
        """Ticks since ``bench_reset`` that arrived, or that the counter or the base class dropped."""
        delivery = self._delivery
        return (
            self.counter.count
            + self.counter.out_of_order
            + delivery.missed
            - self.base_missed
            + delivery.out_of_order
            - self.base_out_of_order
        )

    def _check_waiting(self) -> None:
        waiting = self.waiting
        if waiting is not None and self._accounted() >= waiting[0]:
            waiting[1].set()

    async def bench_wait(self, count: int, idle_s: float) -> int:
        """Wait here until ``count`` ticks since ``bench_reset`` are accounted for (arrived, or dropped
        and counted), or none came for ``idle_s``; returns the ticks that arrived.

        The paced (latency) runs wait on this one call, as the bare client waits on its own pipe: a poll
        every 0.1 s (a Ray call into this process, /proc reads in the driver) landed on about one batch
        in a hundred and so on the p99 that the other consumers are measured without.
        """
        mine = self.waiting = (count, asyncio.Event())
        seen = -1
        try:
            while (now := self._accounted()) < count and now != seen:  # ends when the ticks stop coming
                seen = now
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(mine[1].wait(), idle_s)
        finally:
            if self.waiting is mine:  # not a later call's
                self.waiting = None
        return self.counter.count

    async def bench_result(self, final: bool = True) -> dict[str, Any]:  # noqa: FBT001, FBT002 - a Ray method
        """The measurement so far, with the base class's own counters. The latency percentiles only
        when ``final``: sorting every sample so far takes this process tens of milliseconds, and the
        bench polls while ticks flow (that pause once put a 30 ms tail under every p99 it measured).
        """
        stats = await self.statistics()
        result = self.counter.result(percentiles=final)
        if final:
            read = percentiles_ms(self.read_ns)
            result.update(read_p50_ms=read["p50_ms"], read_p99_ms=read["p99_ms"])
        return {
            **result,
            "exact": self.exact,
            "missed": stats.missed - self.base_missed,
            "dropped_out_of_order": stats.out_of_order - self.base_out_of_order,
            "queued_batches": stats.queued_batches,
            "batches": stats.batches - self.base_batches,  # on_ticks calls
        }

    async def bench_trace(self) -> list[tuple[int, int, int, int, int, int]]:
        """Per batch since the last ``bench_reset(latency=True)``: arrival time_ns, ticks, the worst
        send-to-here and read-to-here ns in it, and this thread's and process's CPU ns so far (where
        the tail latencies come from, and whether this process was busy meanwhile).
        """
        t = self.trace
        return [(t[i], t[i + 1], t[i + 2], t[i + 3], t[i + 4], t[i + 5]) for i in range(0, len(t), 6)]

    async def bench_last_seqs(self) -> dict[str, int]:
        """The last seq seen per code since the last reset (for "ticks flowing again")."""
        return dict(self.counter.last)
