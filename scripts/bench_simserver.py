"""The simulator as scripts/bench.py runs it: scripts/simulator.py with an all-pre-encoded burst.

scripts/simulator.py's ``burst`` builds each chunk of 2000 frames just before writing it (``next_trade``,
``format_units``, ``msgspec`` encode: about 6 us of CPU per frame here). On a 2-core machine that CPU
is taken from the client being measured, and a client faster than ~30-100k frames/s then measures the
simulator. This launcher keeps everything of the simulator (SimState, Market, protocol, admin API,
every other fault) and changes one thing: an unpaced ``burst`` first encodes ALL its frames, in slices
that yield to the event loop, and only then writes them as large pre-joined blobs under the same flow
control. The client's clock starts at its first tick, so the encoding is not part of any figure, and
the write phase costs the simulator almost no CPU. A paced burst (``rate``) is the simulator's own.

In the pre-encoded burst ``sent_ns`` is the encoding time, not the send time: use paced bursts for
latency. Command line: ``python scripts/bench_simserver.py`` with scripts/simulator.py's options.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts import simulator

ENCODE_SLICE_FRAMES = 5000  # frames encoded between two yields to the event loop
BLOB_FRAMES = 4000  # frames joined into one write


class BenchSimulator(simulator.Simulator):
    """A Simulator whose unpaced burst is encoded before the first byte is written."""

    def _fault_burst(self, link: simulator.Link, count: object = 100_000, rate: object = None) -> bool:
        if rate is not None:
            return super()._fault_burst(link, count=count, rate=rate)
        codes = list(link.conn.trades)
        if not codes or not link.writable():
            return False
        if link.burst is not None:
            link.burst.cancel()
        self.sim.set_fault(link.id, "burst")
        link.burst = asyncio.create_task(self._pre_encoded_burst(link, codes, simulator._as_int(count)))  # noqa: SLF001
        return True

    async def _pre_encoded_burst(self, link: simulator.Link, codes: list[str], count: int) -> None:
        next_code = itertools.cycle(codes).__next__
        next_trade = self.market.next_trade
        trade_frame = simulator.trade_frame
        try:
            blobs: list[tuple[bytes, int]] = []
            frames: list[bytes] = []
            for start in range(0, count, ENCODE_SLICE_FRAMES):
                now_ns = time.time_ns()
                # Seq numbers are taken now, in order: they stay increasing per code on the wire.
                frames.extend(
                    trade_frame(next_trade(next_code(), now_ns))
                    for _ in range(min(ENCODE_SLICE_FRAMES, count - start))
                )
                while len(frames) >= BLOB_FRAMES:
                    blobs.append((b"".join(frames[:BLOB_FRAMES]), BLOB_FRAMES))
                    del frames[:BLOB_FRAMES]
                await asyncio.sleep(0)
            if frames:
                blobs.append((b"".join(frames), len(frames)))
            for blob, n in blobs:
                if not link.write([blob]):
                    return
                self.sim.count_pushes(link.id, n)
                await link.ws.drain()  # waits while the transport is above its high-water mark
        finally:
            if link.burst is asyncio.current_task():
                link.burst = None
                self.sim.unset_fault(link.id, "burst")


async def _serve(args: object) -> None:
    a = args  # the simulator's own argparse namespace
    sim = BenchSimulator(
        host=a.host,
        port=a.port,
        token=a.token,
        heartbeat_timeout=a.heartbeat_timeout,
        plan=a.plan,
        max_connections=a.max_connections,
        max_codes=a.max_codes,
        tick_rate=a.tick_rate,
        book_rate=a.book_rate,
        codes=a.codes,
        seed=a.seed,
        conn_gap_s=a.conn_gap_s,
        token_gap_s=a.token_gap_s,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    port = await sim.start()
    sys.stdout.write(f"SIMULATOR LISTENING {a.host}:{port}\n")
    sys.stdout.flush()
    try:
        await stop.wait()
    finally:
        await sim.stop()


def main(argv: list[str] | None = None) -> int:
    """Run the bench simulator until SIGINT/SIGTERM."""
    args = simulator._parser().parse_args(argv)  # noqa: SLF001 - the same options as the simulator
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
