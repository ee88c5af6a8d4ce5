"""Fault injection into live connections: the faults listed in actors.sim's docstring.

The bookkeeping (which connection is stalled, blackholed, in a burst or has a reply pending) is
SimState's; this module carries the faults out on the sockets and writes their frames.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Mapping

import msgspec

from actors.sim.frames import encode, trade_frame, ws_text_frame
from actors.sim.link import Link
from actors.sim.market import Market
from actors.sim.protocol import CMD_TRADE_PUSH, ERROR_MESSAGES, endpoint_path
from actors.sim.state import SimState

log = logging.getLogger("tickvisor.simulator")

FAULTS = (
    "stall",
    "blackhole",
    "drop",
    "ghost",
    "malformed",
    "burst",
    "refuse",
    "reply",
    "clear",
    "hold",
    "mute",
    "seq_reset",
    "tick_time_skew",
    "corrupt",
    "clock",
)
#: Faults of one code, on every connection that holds it (``code`` required); ``clear`` takes a code too.
CODE_FAULTS = ("mute", "seq_reset", "tick_time_skew", "corrupt")
MALFORMED_KINDS = ("json", "fields", "types")

BURST_CHUNK_FRAMES = 2000  # frames pre-encoded and written per writelines() call
BURST_SLICE_S = 0.001  # pacing slice of a rate-limited burst
BURST_ENCODE_SLICE_FRAMES = 5000  # an unpaced burst encodes this many frames between yields to the loop
BURST_BLOB_FRAMES = 4000  # ... and writes them joined, this many per write


class FaultInjector:
    """Carries out ``Simulator.inject``: the server's faults, on its live connections.

    Args:
        sim: the server's SimState (faults' bookkeeping, push counters).
        market: the server's Market (ghost, malformed and burst trades advance its seq numbers).
        links: the server's live connections by id; the server keeps it current.
        clock: the server's monotonic clock (``clear`` restarts the heartbeat clock at its now).

    """

    def __init__(
        self,
        sim: SimState,
        market: Market,
        links: Mapping[int, Link],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sim = sim
        self.market = market
        self.links = links
        self._clock = clock

    def inject(
        self, fault: str, *, path: str | None = None, conn: int | None = None, **params: object
    ) -> list[int]:
        """Inject a fault into live connections; call it on the simulator's loop.

        Args:
            fault: one of FAULTS (see actors.sim's docstring).
            path: an endpoint path or name; None = every path.
            conn: a connection id; None = every current connection on the path.
            params: the fault's parameters (count, code, kind, rate, ret, msg); strings are converted.

        Returns:
            The ids of the affected connections ([] for refuse).

        Raises:
            ValueError: unknown fault, path or parameter.

        """
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}, expected one of {list(FAULTS)}")
        target = endpoint_path(path)
        if path is not None and target is None:
            raise ValueError(f"unknown path {path!r}")
        allowed = {
            "ghost": {"count", "code"},
            "malformed": {"kind"},
            "burst": {"count", "rate"},
            "refuse": {"count"},
            "reply": {"ret", "msg"},
            "hold": {"count"},
            "clear": {"code"},
            "mute": {"code"},
            "seq_reset": {"code"},
            "tick_time_skew": {"code", "skew_s"},
            "corrupt": {"code", "price", "volume", "count"},
            "clock": {"offset_s"},
        }.get(fault, set())
        if params.keys() - allowed:
            raise ValueError(f"fault {fault} takes no parameter {sorted(params.keys() - allowed)}")
        if fault in CODE_FAULTS or (fault == "clear" and "code" in params):
            return self._code_fault(fault, target, conn, **params)
        if fault == "refuse":
            self.sim.refuse_next(target, _as_int(params.get("count", 1)))
            log.info(
                "fault refuse: next %s new connection(s) on %s", params.get("count", 1), target or "any path"
            )
            return []
        if fault == "clock":
            self.market.clock_offset_ms = round(_as_float(params.get("offset_s", 0)) * 1000)
            log.info("fault clock: tick_time shifted by %s s", params.get("offset_s", 0))
            return []
        if fault == "hold":
            self.sim.hold_next(target, _as_int(params.get("count", 1)))
            log.info(
                "fault hold: next %s subscription request(s) on %s",
                params.get("count", 1),
                target or "any path",
            )
            return []
        links = [
            link
            for link in self.links.values()
            if (target is None or link.conn.path == target) and (conn is None or link.id == conn)
        ]
        action = getattr(self, f"_fault_{fault}")
        affected = [link.id for link in links if action(link, **params)]
        log.info("fault %s on connection(s) %s", fault, affected)
        return affected

    def _fault_stall(self, link: Link) -> bool:
        self.sim.set_fault(link.id, "stall")
        return True

    def _fault_blackhole(self, link: Link) -> bool:
        self.sim.set_fault(link.id, "blackhole")
        link.ws.transport.pause_reading()
        return True

    def _fault_drop(self, link: Link) -> bool:
        link.ws.transport.abort()
        return True

    def _code_fault(
        self, fault: str, target: str | None, conn: int | None, *, code: object = None, **params: object
    ) -> list[int]:
        """A per-code fault; returns the live connections (on ``target``/``conn``) that hold ``code``."""
        if code is None:
            raise ValueError(f"fault {fault} needs a code")
        code = str(code)
        if code not in self.market.instruments:
            raise ValueError(f"unknown code {code!r}: the simulator serves no such code")
        # corrupt pushes trades, so it goes to the trade holders; the others act wherever the code is
        # held, as trades or as an order book
        kinds = ("trades",) if fault == "corrupt" else ("trades", "books")
        links = [
            link
            for link in self.links.values()
            if any(code in getattr(link.conn, kind) for kind in kinds)
            and (target is None or link.conn.path == target)
            and (conn is None or link.id == conn)
        ]
        if fault == "mute":
            self.market.muted.add(code)
        elif fault == "clear":
            self.market.clear_code_faults(code)
        elif fault == "seq_reset":
            self.market.reset_seq(code)
        elif fault == "tick_time_skew":
            self.market.skew_ms[code] = round(_as_float(params.get("skew_s", 3600)) * 1000)
        else:
            self._corrupt(links, code, **params)
        log.info("fault %s for %s on connection(s) %s", fault, code, [link.id for link in links])
        return [link.id for link in links]

    def _corrupt(
        self, links: list[Link], code: str, price: object = "0", volume: object = None, count: object = 1
    ) -> None:
        trades = []
        for _ in range(_as_int(count)):
            trade = self.market.next_trade(code, time.time_ns())
            trade.price = str(price)
            if volume is not None:
                trade.volume = str(volume)
            trades.append(trade)
        self.market.instrument(code).last_trade = None  # a snapshot never repeats a corrupt trade
        frames = [trade_frame(t) for t in trades]
        for link in links:
            if link.write(frames):
                self.sim.count_pushes(link.id, len(frames))

    def _fault_clear(self, link: Link) -> bool:
        self.market.clear_code_faults()
        removed = self.sim.clear_faults(link.id, self._clock())
        if "blackhole" in removed:
            link.ws.transport.resume_reading()
        if link.burst is not None:
            link.burst.cancel()
        return bool(removed)

    def _fault_reply(self, link: Link, ret: object = 603, msg: object = None) -> bool:
        code = _as_int(ret)
        self.sim.set_reply(link.id, code, ERROR_MESSAGES.get(code, "error") if msg is None else str(msg))
        return True

    def _fault_ghost(self, link: Link, count: object = 5, code: object = None) -> bool:
        if not link.writable():
            return False
        ghost = self.sim.unsubscribed_code(link.id) if code is None else str(code)
        if ghost in link.conn.trades:
            raise ValueError(f"ghost code {ghost} is subscribed on connection {link.id}")
        frames = [trade_frame(self.market.next_trade(ghost, time.time_ns())) for _ in range(_as_int(count))]
        link.write(frames)
        self.sim.count_pushes(link.id, len(frames))
        return True

    def _fault_malformed(self, link: Link, kind: object = "json") -> bool:
        if kind not in MALFORMED_KINDS:
            raise ValueError(f"unknown malformed kind {kind!r}, expected one of {list(MALFORMED_KINDS)}")
        if not link.writable():
            return False
        code = next(iter(link.conn.trades), self.sim.unsubscribed_code(link.id))
        trade = msgspec.to_builtins(self.market.next_trade(code, time.time_ns()))
        if kind == "json":
            payload = encode({"cmd_id": CMD_TRADE_PUSH, "data": trade})[:-7] + b',"pri'  # cut mid-key
        elif kind == "fields":
            del trade["price"]
            payload = encode({"cmd_id": CMD_TRADE_PUSH, "data": trade})
        else:
            trade["price"] = float(trade["price"])
            payload = encode({"cmd_id": CMD_TRADE_PUSH, "data": trade})
        link.write([ws_text_frame(payload)])
        self.sim.count_pushes(link.id, 1)
        return True

    def _fault_burst(self, link: Link, count: object = 100_000, rate: object = None) -> bool:
        codes = list(link.conn.trades)
        if not codes or not link.writable():
            return False
        if link.burst is not None:
            link.burst.cancel()
        self.sim.set_fault(link.id, "burst")
        link.burst = asyncio.create_task(
            self._burst(link, codes, _as_int(count), None if rate is None else _as_float(rate))
        )
        return True

    async def _burst(self, link: Link, codes: list[str], count: int, rate: float | None) -> None:
        """Write count trades round-robin over codes, in chunks with flow control.

        Unpaced, every frame is encoded before the first byte is written (in slices that yield to the
        event loop), then written as large joined blobs: the write phase costs the server almost no
        CPU, so on a small machine it outpaces any client and does not measure itself. Its ``sent_ns``
        is then the encoding time; use a paced burst (``rate``) for latency.
        """
        try:
            if rate is None:
                await self._burst_pre_encoded(link, codes, count)
            else:
                await self._burst_paced(link, codes, count, rate)
        finally:
            if link.burst is asyncio.current_task():  # not superseded by a newer burst
                link.burst = None
                self.sim.unset_fault(link.id, "burst")

    async def _burst_pre_encoded(self, link: Link, codes: list[str], count: int) -> None:
        next_code = itertools.cycle(codes).__next__
        next_trade = self.market.next_trade
        blobs: list[tuple[bytes, int]] = []
        frames: list[bytes] = []
        for start in range(0, count, BURST_ENCODE_SLICE_FRAMES):
            now_ns = time.time_ns()
            # Seq numbers are taken now, in order: they stay increasing per code on the wire.
            frames.extend(
                trade_frame(next_trade(next_code(), now_ns))
                for _ in range(min(BURST_ENCODE_SLICE_FRAMES, count - start))
            )
            while len(frames) >= BURST_BLOB_FRAMES:
                blobs.append((b"".join(frames[:BURST_BLOB_FRAMES]), BURST_BLOB_FRAMES))
                del frames[:BURST_BLOB_FRAMES]
            await asyncio.sleep(0)
        if frames:
            blobs.append((b"".join(frames), len(frames)))
        for blob, n in blobs:
            if not link.write([blob]):
                return
            self.sim.count_pushes(link.id, n)
            await link.ws.drain()  # waits while the transport is above its high-water mark

    async def _burst_paced(self, link: Link, codes: list[str], count: int, rate: float) -> None:
        next_code = itertools.cycle(codes).__next__
        next_trade = self.market.next_trade
        loop = asyncio.get_running_loop()
        started = loop.time()
        sent = 0
        while sent < count:
            if not link.writable():
                return
            due = min(count, int((loop.time() - started) * rate) + 1)
            n = min(BURST_CHUNK_FRAMES, due - sent)
            if n > 0:
                now_ns = time.time_ns()
                # Allocated and written in one synchronous step: seq stays increasing per code.
                link.write([trade_frame(next_trade(next_code(), now_ns)) for _ in range(n)])
                self.sim.count_pushes(link.id, n)
                sent += n
            await link.ws.drain()
            await asyncio.sleep(BURST_SLICE_S)


def _as_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str | float):
        raise ValueError(f"expected an integer, got {value!r}")  # noqa: TRY004 - inject() raises ValueError for any bad parameter (its documented contract)
    return int(value)


def _as_float(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | str | float):
        raise ValueError(f"expected a number, got {value!r}")  # noqa: TRY004 - inject() raises ValueError for any bad parameter (its documented contract)
    return float(value)
