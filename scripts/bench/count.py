"""The per-tick work every benchmarked consumer does: count, check per-code order, optionally time.

Pure (no Ray, no socket), so the four consumers of scripts/bench.py (tickvisor's strategy, the seed
design, the bare client, the naive pipeline) do exactly the same work per tick.

A burst's seq numbers grow by exactly one per code (the simulator keeps one counter per code), so
``gaps`` counts ticks lost in between and ``out_of_order`` ticks whose seq is not above the last one.

A result with latencies carries them twice: as percentiles and as ``latency_hist``, counts over fixed
log-spaced bins (``latency_edges_ms``), small enough for a RESULT line and enough for a CDF plot
(scripts/bench/plots.py).
"""

from __future__ import annotations

import bisect
import time
from array import array
from typing import Any

#: The latency histogram's bins: ``HIST_BINS_PER_DECADE`` per decade from ``HIST_LO_NS`` (10 us) over
#: ``HIST_DECADES`` decades (to 10 s), plus one bin below and one above.
HIST_LO_NS = 10_000
HIST_BINS_PER_DECADE = 20
HIST_DECADES = 6
_EDGES_NS = [
    round(HIST_LO_NS * 10 ** (i / HIST_BINS_PER_DECADE))
    for i in range(HIST_BINS_PER_DECADE * HIST_DECADES + 1)
]


class TickCounter:
    """Counts ticks and checks per-code seq order; records latencies when asked to."""

    def __init__(self) -> None:
        self.reset()

    def reset(self, *, record_latency: bool = False) -> None:
        """Start a new measurement."""
        self.last: dict[str, int] = {}
        self.count = 0
        self.gaps = 0
        self.out_of_order = 0
        self.first_at = 0.0  # time.monotonic() of the first batch
        self.first_n = 0  # ticks in that first batch
        self.last_at = 0.0
        self.record_latency = record_latency
        self.latency_ns = array("q")

    def add(self, code: str, seq: int, now: float) -> None:
        """One tick (a consumer that handles one frame at a time)."""
        last = self.last.get(code)
        if last is not None and seq != last + 1:
            if seq <= last:
                self.out_of_order += 1
                return
            self.gaps += seq - last - 1
        self.last[code] = seq
        self.count += 1
        if not self.first_n:
            self.first_at, self.first_n = now, 1
        self.last_at = now

    def add_batch(self, records: list[Any], now: float) -> None:
        """Many ticks at once: objects with ``code`` and ``seq`` attributes."""
        seen = self.last
        get = seen.get
        n = 0
        for rec in records:
            code = rec.code
            seq = rec.seq
            last = get(code)
            if last is not None and seq != last + 1:
                if seq <= last:
                    self.out_of_order += 1
                    continue
                self.gaps += seq - last - 1
            seen[code] = seq
            n += 1
        self.count += n
        if not self.first_n and n:
            self.first_at, self.first_n = now, n
        self.last_at = now

    def latency(self, sent_ns: int, now_ns: int) -> None:
        """Record one send-to-here latency."""
        self.latency_ns.append(now_ns - sent_ns)

    def result(self, *, percentiles: bool = True) -> dict[str, Any]:
        """A JSON-able summary; ``tps`` counts from the first batch's arrival to the last one's. The
        latency percentiles (a sort of every sample) only with ``percentiles``.
        """
        span = self.last_at - self.first_at
        return {
            "count": self.count,
            "gaps": self.gaps,
            "out_of_order": self.out_of_order,
            "codes": len(self.last),
            "span_s": span,
            "tps": (self.count - self.first_n) / span if span > 0 else 0.0,
            **(percentiles_ms(self.latency_ns) if percentiles else {}),
            **(
                {"latency_hist": latency_histogram(self.latency_ns)}
                if percentiles and self.latency_ns
                else {}
            ),
        }


def percentiles_ms(samples_ns: Any) -> dict[str, float]:
    """p50, p99 and max of nanosecond samples, in milliseconds (zeros when there are none)."""
    if not len(samples_ns):
        return {"p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0, "samples": 0}
    ordered = sorted(samples_ns)
    n = len(ordered)

    def at(q: float) -> float:
        return ordered[min(n - 1, int(q * n))] / 1e6

    return {"p50_ms": at(0.50), "p99_ms": at(0.99), "max_ms": ordered[-1] / 1e6, "samples": n}


def latency_edges_ms() -> list[float]:
    """The edges of the histogram's inner bins, in milliseconds (one more than the inner bins)."""
    return [edge / 1e6 for edge in _EDGES_NS]


def latency_histogram(samples_ns: Any) -> list[int]:
    """Counts of nanosecond samples per bin: [below the first edge, each inner bin, at or above the last]."""
    counts = [0] * (len(_EDGES_NS) + 1)
    find = bisect.bisect_right
    edges = _EDGES_NS
    for sample in samples_ns:
        counts[find(edges, sample)] += 1
    return counts


def now() -> float:
    """The clock of ``first_at``/``last_at``."""
    return time.monotonic()
