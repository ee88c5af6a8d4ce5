"""Benchmark candidate channels for the data path, without Ray, against the simulator on 127.0.0.1.

    python scripts/bench/channels.py            # 3 rounds of every figure, median: about 6 minutes
    python scripts/bench/channels.py --quick    # 1 round: about 75 s on a 2-core machine
    python scripts/bench/channels.py --smoke    # tiny counts: what tests/test_bench_channels.py runs
    python scripts/bench/channels.py --receivers picows --channels uds,zmq-ipc --rounds 5  # a subset

It prints a markdown table and, as its very last line, ``BENCH_CHANNELS {json}``. Every figure is
measured in this run, beside its baselines: the machine is shared and noisy, the ratios are what count.

The pipeline (one per variant; three processes, no Ray), the data path the issue "The data path" plans:

    simulator ══ws══▶ receiver ──FrameBatch──▶ decoder ──list[Tick] per strategy──▶ strategy
                      (websockets or picows)   (decode_batch)                  (TickCounter)

* The receiver reads the WebSocket and flushes its raw frames as one msgpack ``FrameBatch`` when the
  receive buffer is drained or at ``BATCH_MAX_FRAMES`` frames. websockets: its queue of received
  frames is empty; picows: the frame is ``last_in_buffer`` (the last of what one socket read returned).
* The decoder decodes each batch with ``actors.core.decode_batch`` (the Decoder actor's function:
  one msgspec call per frame, then the normalisation into ``Tick``; see "Decoding" below), routes the
  ticks by code and sends each strategy one msgpack-encoded ``list[Tick]``, as the Decoder actor does.
* The strategy decodes the list and does scripts.bench.count.TickCounter's per-tick work (count, per-code
  order, latency from the simulator's ``sent_ns`` at the time the batch arrived).

The channels between the processes, each end in its own asyncio loop:

* ``zmq-ipc``: pyzmq PUSH/PULL over ``ipc://`` (a Unix socket file), the receiving end binds;
* ``zmq-tcp``: the same over ``tcp://127.0.0.1`` (what would cross nodes);
* ``uds``: tickvisor's own channel, actors/channel.py (``TickvisorChannel``): a Unix-domain stream
  in Linux's abstract namespace, each message a numbered msgpack batch, acknowledged back.

Sends wait when the channel is full (zmq: ``CHANNEL_HWM`` messages queued at each end; uds:
``CHANNEL_HWM`` messages unacknowledged). That is backpressure as the Connection actor applies it
(it waits at 16 batches in flight); a strategy-facing send that must never wait would use
``zmq.NOBLOCK`` and count ``zmq.Again`` as a drop (uds: the decoder's ``Outbox`` drops and counts).

Baselines: ``bare`` (websockets + msgspec, one process) and ``bare_picows`` (picows + msgspec, one
process), both from scripts/bench/clients.py.

Figures, per variant (the BENCH_CHANNELS keys):

* ``tps``: ticks per second over an unpaced burst of ``--burst`` ticks (200k) across 100 codes on one
  connection, counted at the strategy from its first batch to its last (median of the rounds), and
  ``x_bare``, its ratio to ``bare_tps`` (same run); ``order_ok``: every tick arrived, in per-code order.
* ``cpu_s_per_mtick``: CPU seconds of the pipeline's three processes (from /proc: every thread, so
  pyzmq's I/O thread too) from the burst's injection to its last tick, per million ticks, and each
  process's share (``cpu_receiver_s_per_mtick``, ...); for the baselines, the client's own process.
* ``p50_ms``/``p99_ms`` at a paced 20k ticks/s and ``low_p50_ms``/``low_p99_ms`` at 2k ticks/s: from
  the simulator's ``sent_ns`` (wall clock, the same host) to the strategy's receipt of the batch;
  ``latency_tps``: the rate delivered at the 20k pace (below it, queues grew).
* ``delivered``: the ticks counted in each measurement, to compare with ``expected``.

Each round measures every variant and baseline in turn (the burst, then the two paced runs), in an
order rotated from round to round; every figure is the median over the rounds.

Decoding: the issue's plan decodes a batch "in one msgspec call". Joining the frames into one JSON array
and decoding that saves about 1 us of the decoder's 6 us per tick here (the rest is the normalisation
into ``Tick``: integer and decimal-string checks), but a crafted frame can end the array early and
smuggle in a frame of its own, so the decoder keeps ``decode_batch``'s one call per frame, and what is
measured is the function the Decoder actor runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import json
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import msgspec
import zmq
import zmq.asyncio
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from actors.channel import LOOPBACK, Address, Peer, Receiver, Sender
from actors.core.normalise import Tick, decode_batch
from actors.core.routing import Outbox
from scripts.bench.clients import MAX_FRAME_BYTES, connect_picows, subscribe_websockets
from scripts.bench.count import TickCounter
from scripts.bench.harness import (
    FOREX_PATH,
    ROOT,
    SimProcess,
    block,
    cpu_seconds,
    hard_cap,
    log,
    run_client,
)
from scripts.bench.modes import Mode, mode_of

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

RECEIVERS = ("websockets", "picows")
CHANNELS = ("zmq-ipc", "zmq-tcp", "uds")
BASELINES = ("bare", "bare_picows")
BASELINE_LABELS = {"bare": "bare websockets (1 process)", "bare_picows": "bare picows (1 process)"}
BATCH_MAX_FRAMES = 256  # actors/connection.py: ConnectionConfig.batch_max_frames
CHANNEL_HWM = 16  # zmq messages queued per end; actors/connection.py: max_batches_in_flight
PICOWS_MAX_UNSENT = 16  # picows receiver: batches not yet sent before it stops reading the socket
STRATEGY = "bench"  # the one strategy every code is routed to
ROLES = ("receiver", "decoder", "strategy")  # a pipeline's processes
IDLE_S = 5.0  # a measurement ends this long after its last tick, even short of its count
START_TIMEOUT_S = 30.0


class FrameBatch(msgspec.Struct, array_like=True, gc=False):
    """Receiver to decoder: raw frames in arrival order, and the wall-clock time the first was read."""

    received_ns: int
    frames: list[bytes]


# --- channels -----------------------------------------------------------------------------------------


class Channel(Protocol):
    """One end of a one-way message channel between two processes."""

    async def send(self, payload: bytes) -> None:
        """Send one message; waits while the channel is full."""

    async def recv(self) -> bytes:
        """The next message."""


class ZmqChannel:
    """One end of a pyzmq PUSH/PULL pair: the receiving end binds (PULL), the sending end connects (PUSH)."""

    def __init__(self, sock: zmq.asyncio.Socket) -> None:
        self._sock = sock

    @classmethod
    def _socket(cls, kind: int) -> zmq.asyncio.Socket:
        sock = zmq.asyncio.Context.instance().socket(kind)
        sock.setsockopt(zmq.SNDHWM if kind == zmq.PUSH else zmq.RCVHWM, CHANNEL_HWM)
        sock.setsockopt(zmq.LINGER, 0)
        return sock

    @classmethod
    def listen(cls, address: str) -> tuple[ZmqChannel, str]:
        """Bind a PULL socket to ``address`` (``ipc://path``, ``tcp://127.0.0.1:*``): (end, bound address)."""
        sock = cls._socket(zmq.PULL)
        sock.bind(address)
        return cls(sock), sock.getsockopt_string(zmq.LAST_ENDPOINT)

    @classmethod
    def connect(cls, address: str) -> ZmqChannel:
        """Connect a PUSH socket to ``address``."""
        sock = cls._socket(zmq.PUSH)
        sock.connect(address)
        return cls(sock)

    async def send(self, payload: bytes) -> None:
        await self._sock.send(payload)

    async def recv(self) -> bytes:
        return await self._sock.recv()


class TickvisorChannel:
    """One end of tickvisor's own data-path channel (actors/channel.py: a Unix-domain stream in Linux's
    abstract namespace, numbered batches, cumulative acknowledgements, a bounded ``Outbox``), behind
    this benchmark's ``Channel``: the receiving end acknowledges a message as ``recv`` hands it over,
    the sending end waits while ``CHANNEL_HWM`` messages are unacknowledged (the Connection actor's
    backpressure, actors/connection.py ``_flush``).
    """

    def __init__(self, *, receiver: Receiver | None = None, sender: Sender | None = None) -> None:
        self._receiver = receiver  # kept while the end lives: it owns the listening sockets
        self._inbox: asyncio.Queue[tuple[Peer, int, bytes]] = asyncio.Queue()
        self._sender = sender

    @classmethod
    async def listen(cls, name: str) -> tuple[TickvisorChannel, str]:
        """Listen (Unix socket and loopback TCP); (end, its ``Address`` as JSON)."""
        end = cls()
        end._receiver = Receiver(name, end._arrived, node="", host=LOOPBACK)
        address = await end._receiver.address()
        return end, msgspec.json.encode(address).decode()

    @classmethod
    async def connect(cls, address: str) -> TickvisorChannel:
        """Connect to the receiving end whose ``Address`` (JSON, from ``listen``) is ``address``."""
        where = msgspec.json.decode(address, type=Address)

        async def resolve() -> Address:
            return where

        sender = Sender("bench", resolve, Outbox(max_batches=CHANNEL_HWM, replay=False), node="")
        await sender.wait_connected()
        return cls(sender=sender)

    def _arrived(self, peer: Peer, number: int, missed: int, body: bytes) -> None:  # noqa: ARG002
        self._inbox.put_nowait((peer, number, body))

    async def send(self, payload: bytes) -> None:
        sender = self._sender
        assert sender is not None, "the listening end only receives"
        while sender.outbox.pending >= CHANNEL_HWM:
            await sender.wait_acked()
        if not sender.send(payload, 1):
            raise RuntimeError(f"{sender.name}: the outbox refused a message ({sender.last_error})")

    async def recv(self) -> bytes:
        peer, number, body = await self._inbox.get()
        peer.ack(number)
        return body


async def listen(channel: str, workdir: str, name: str) -> tuple[Channel, str]:
    """The receiving end of a ``channel`` (one of CHANNELS); (end, the address its sender connects to).

    Args:
        channel: ``zmq-ipc``, ``zmq-tcp`` or ``uds``.
        workdir: a directory for socket files (short: a Unix socket path has at most 107 bytes).
        name: the receiving process's name, unique in ``workdir``.

    """
    if channel == "zmq-ipc":
        return ZmqChannel.listen(f"ipc://{workdir}/{name}.zmq")
    if channel == "zmq-tcp":
        return ZmqChannel.listen("tcp://127.0.0.1:*")
    if channel == "uds":
        return await TickvisorChannel.listen(name)
    raise ValueError(f"unknown channel {channel!r}, expected one of {CHANNELS}")


async def connect(channel: str, address: str) -> Channel:
    """The sending end of a ``channel`` to the receiving end at ``address`` (from ``listen``)."""
    if channel == "uds":
        return await TickvisorChannel.connect(address)
    return ZmqChannel.connect(address)


# --- the pipeline's processes ---------------------------------------------------------------------------
#
# Each runs one asyncio loop and talks to the benchmark over its multiprocessing Pipe: it sends
# ("ready", address) once it listens (or, the receiver, once subscribed), and ("error", text) if it fails.


def actor_loop() -> asyncio.AbstractEventLoop:
    """A new event loop of the kind Ray runs an async actor on: uvloop when it is installed (it is not in
    scripts/requirements.lock: docs/performance.md) unless ``RAY_USE_UVLOOP`` is false, else asyncio's own.
    The pipeline's processes run on it, so that the floor they measure and tickvisor's actors share
    their loop wherever the benchmark runs.
    """
    if os.environ.get("RAY_USE_UVLOOP", "1").lower() in {"1", "true"}:
        with contextlib.suppress(ImportError):
            import uvloop

            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def _process(conn: Connection, main: Callable[[], Any]) -> None:
    """Run ``main()`` in a fresh loop (``actor_loop``); report a failure on ``conn`` instead of dying
    silently.
    """
    try:
        with asyncio.Runner(loop_factory=actor_loop) as runner:
            runner.run(main())
    except Exception as exc:  # noqa: BLE001 - reported to the benchmark, which stops the run
        conn.send(("error", f"{type(exc).__name__}: {exc}"))


class Measurements:
    """The strategy's side of the benchmark's measurements: one TickCounter, reset per measurement.

    Commands on ``conn``: ("measure", count, latency) starts a measurement and is answered with
    ("measuring", None); ("result", dict) follows when ``count`` ticks have arrived, or ``IDLE_S`` after
    the last one.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.counter = TickCounter()
        self.target = 0  # ticks the measurement under way waits for; 0: none under way
        self.last = 0.0  # time.monotonic() of its last batch

    def command(self) -> None:
        """Take the next command from ``conn`` (it is readable)."""
        kind, count, latency = self.conn.recv()
        assert kind == "measure", kind
        self.counter.reset(record_latency=latency)
        self.target, self.last = count, time.monotonic()
        self.conn.send(("measuring", None))

    def add(self, ticks: list[Tick]) -> None:
        """Count one batch, and time it from each tick's ``sent_ns`` when the measurement asks for it."""
        counter = self.counter
        self.last = now = time.monotonic()
        counter.add_batch(ticks, now)
        if counter.record_latency:
            now_ns = time.time_ns()
            for tick in ticks:
                counter.latency(tick.sent_ns, now_ns)
        if self.target and counter.count >= self.target:
            self.finish()

    def finish(self) -> None:
        """Report the measurement's result."""
        self.target = 0
        self.conn.send(("result", self.counter.result()))

    async def idle_guard(self) -> None:
        """End a measurement ``IDLE_S`` after its last batch, even short of its count."""
        while True:
            await asyncio.sleep(0.25)
            if self.target and time.monotonic() - self.last > IDLE_S:
                self.finish()


def strategy_process(conn: Connection, channel: str, workdir: str) -> None:
    """The strategy: counts, checks order and times the ticks of each measurement (``Measurements``)."""

    async def main() -> None:
        inbox, address = await listen(channel, workdir, STRATEGY)
        decode = msgspec.msgpack.Decoder(list[Tick]).decode
        measurements = Measurements(conn)
        loop = asyncio.get_running_loop()
        loop.add_reader(conn.fileno(), measurements.command)
        guard = loop.create_task(measurements.idle_guard())
        conn.send(("ready", address))
        try:
            while True:
                measurements.add(decode(await inbox.recv()))
        finally:
            guard.cancel()

    _process(conn, main)


def decoder_process(conn: Connection, channel: str, workdir: str, strategy_address: str) -> None:
    """The decoder: raw frame batches in, one msgpack ``list[Tick]`` per strategy out."""

    async def main() -> None:
        inbox, address = await listen(channel, workdir, "decoder")
        outboxes = {STRATEGY: await connect(channel, strategy_address)}
        fan_out = FanOut()
        decode = msgspec.msgpack.Decoder(FrameBatch).decode
        conn.send(("ready", address))
        while True:
            batch = decode(await inbox.recv())
            for name, payload in fan_out(batch.frames, batch.received_ns):
                await outboxes[name].send(payload)  # -> the strategy

    _process(conn, main)


class FanOut:
    """The decoder's work on one batch: ``decode_batch``, the ticks routed by code, one msgpack
    ``list[Tick]`` per strategy. The decoder process runs it; a fused receiver runs it itself.
    """

    def __init__(self) -> None:
        self.routes: dict[str, tuple[str, ...]] = {}  # code -> strategies; every code goes to STRATEGY here
        self.encode = msgspec.msgpack.Encoder().encode

    def __call__(self, frames: list[bytes], received_ns: int) -> list[tuple[str, bytes]]:
        """(strategy, its encoded ticks) for each strategy that has ticks in this batch."""
        routes = self.routes
        per_strategy: dict[str, list[Tick]] = {}
        for tick in decode_batch(frames, received_ns).ticks:
            targets = routes.get(tick.code)
            if targets is None:
                targets = routes[tick.code] = (STRATEGY,)
            for name in targets:
                per_strategy.setdefault(name, []).append(tick)
        return [(name, self.encode(ticks)) for name, ticks in per_strategy.items()]


def receiver_process(  # noqa: PLR0917 - the pipeline's coordinates, passed by multiprocessing positionally
    conn: Connection,
    receiver: str,
    channel: str,
    url: str,
    codes: list[str],
    downstream: str,
    fused: bool,  # noqa: FBT001
) -> None:
    """The receiver: subscribes ``codes`` on ``url``, then forwards raw frames in batches to the decoder
    at ``downstream``; ``fused``: decodes and routes them itself (``FanOut``) and sends the strategy at
    ``downstream`` its ticks (two processes, no decoder).
    """

    async def main() -> None:
        outbox = await connect(channel, downstream)
        pack = fused_packer() if fused else frame_packer()
        if receiver == "websockets":
            await receive_websockets(conn, url, codes, outbox, pack)
        elif receiver == "picows":
            await receive_picows(conn, url, codes, outbox, pack)
        else:
            raise ValueError(f"unknown receiver {receiver!r}, expected one of {RECEIVERS}")

    _process(conn, main)


#: What a receiver sends for one batch of frames read at ``received_ns``: the messages for downstream.
Packer = Callable[[list[bytes], int], list[bytes]]


def frame_packer() -> Packer:
    """The raw frames as one ``FrameBatch``, for the decoder."""
    encode = msgspec.msgpack.Encoder().encode
    return lambda frames, received_ns: [encode(FrameBatch(received_ns, frames))]


def fused_packer() -> Packer:
    """The frames decoded and routed here (``FanOut``): the strategy's encoded ticks. A fused receiver
    sends to one strategy (``STRATEGY``, where ``FanOut`` routes every code), so the names are dropped.
    """
    fan_out = FanOut()
    return lambda frames, received_ns: [payload for _, payload in fan_out(frames, received_ns)]


async def receive_websockets(
    conn: Connection, url: str, codes: list[str], outbox: Channel, pack: Packer
) -> None:
    """websockets: a batch goes when websockets holds no further received frame, or at BATCH_MAX_FRAMES."""
    async with ws_connect(
        url, compression=None, ping_interval=None, max_queue=None, max_size=MAX_FRAME_BYTES
    ) as ws:
        await subscribe_websockets(ws, codes)
        conn.send(("ready", ""))
        buffered = ws.recv_messages.frames  # websockets' queue of the frames read but not yet taken
        recv, time_ns = ws.recv, time.time_ns
        with contextlib.suppress(ConnectionClosed):
            while True:
                frames = [await recv(decode=False)]
                first_ns = time_ns()
                while len(buffered) and len(frames) < BATCH_MAX_FRAMES:
                    frames.append(await recv(decode=False))
                for payload in pack(frames, first_ns):
                    await outbox.send(payload)  # -> the decoder (fused: the strategy)


async def receive_picows(conn: Connection, url: str, codes: list[str], outbox: Channel, pack: Packer) -> None:
    """picows: a batch goes at a frame that is ``last_in_buffer``, or at BATCH_MAX_FRAMES.

    picows calls back synchronously for each frame, so the batches wait in a queue for a sending task;
    with ``PICOWS_MAX_UNSENT`` batches queued the socket is no longer read until the channel takes them.
    """
    unsent: deque[bytes] = deque()
    wake = asyncio.Event()
    frames: list[bytes] = []
    first_ns = 0
    paused: list[asyncio.BaseTransport] = []

    def on_frame(payload: bytes, last_in_buffer: bool) -> None:  # noqa: FBT001 - picows' flag
        nonlocal frames, first_ns
        if not frames:
            first_ns = time.time_ns()
        frames.append(payload)
        if last_in_buffer or len(frames) >= BATCH_MAX_FRAMES:
            unsent.extend(pack(frames, first_ns))
            frames = []
            wake.set()
            if len(unsent) >= PICOWS_MAX_UNSENT and not paused:
                paused.append(transport.underlying_transport)
                paused[0].pause_reading()  # type: ignore[attr-defined]

    transport = await connect_picows(url, codes, on_frame)
    conn.send(("ready", ""))
    while not transport.is_disconnected:
        await wake.wait()
        wake.clear()
        while unsent:
            await outbox.send(unsent.popleft())  # -> the decoder (fused: the strategy)
        if paused:
            paused.pop().resume_reading()  # type: ignore[attr-defined]


# --- running pipelines ----------------------------------------------------------------------------------


def expect(conn: Connection, proc: BaseProcess, what: str, timeout: float) -> Any:
    """The payload of the next ``what`` message from a process.

    Raises:
        RuntimeError: the process reported an error, or exited.
        TimeoutError: nothing within ``timeout`` seconds.

    """
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if conn.poll(min(left, 0.5)):
            kind, payload = conn.recv()
            if kind == "error":
                raise RuntimeError(f"{proc.name}: {payload}")
            if kind == what:
                return payload
        elif not proc.is_alive():
            raise RuntimeError(f"{proc.name} exited ({proc.exitcode}) before {what}")
    raise TimeoutError(f"{proc.name}: no {what} within {timeout:.0f} s")


@dataclass
class Pipeline:
    """One variant's three processes, subscribed to its codes on the simulator; ``fused``: two, the
    receiver decoding and routing itself (what the design would cost with the decode in the connection
    actor's process: one process hop less per batch).
    """

    receiver: str
    channel: str
    fused: bool = False
    sim_conn: int = 0
    procs: dict[str, BaseProcess] = field(default_factory=dict)
    conns: dict[str, Connection] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """``receiver/channel``, ``+fused`` when fused."""
        return f"{self.receiver}/{self.channel}" + ("+fused" if self.fused else "")

    def _spawn(self, role: str, target: Callable[..., None], *args: Any) -> Any:
        ctx = multiprocessing.get_context("spawn")
        ours, theirs = ctx.Pipe()
        proc = ctx.Process(target=target, args=(theirs, *args), name=f"{self.name} {role}", daemon=True)
        proc.start()
        self.procs[role], self.conns[role] = proc, ours
        return expect(ours, proc, "ready", START_TIMEOUT_S)

    def start(self, sim: SimProcess, codes: list[str], workdir: str) -> Pipeline:
        """Start the strategy, the decoder (unless fused) and the receiver, in that order (each connects
        downstream).
        """
        workdir = tempfile.mkdtemp(prefix=f"{self.receiver[:2]}-{self.channel}-", dir=workdir)
        try:
            downstream = strategy = self._spawn("strategy", strategy_process, self.channel, workdir)
            if not self.fused:
                downstream = self._spawn("decoder", decoder_process, self.channel, workdir, strategy)
            url = sim.url(FOREX_PATH)
            self._spawn(
                "receiver", receiver_process, self.receiver, self.channel, url, codes, downstream, self.fused
            )
            self.sim_conn = sim.find_conn(codes)
        except BaseException:
            self.stop()
            raise
        return self

    def measure(self, sim: SimProcess, count: int, rate: float | None = None) -> dict[str, Any]:
        """Burst ``count`` ticks (paced at ``rate`` per second, or unpaced); the strategy's result.

        The result has ``cpu_s``, the CPU seconds of its processes from the injection to the last tick,
        and each one's share (``cpu_s_receiver``, ``cpu_s_decoder`` unless fused, ``cpu_s_strategy``).
        """
        strategy, proc = self.conns["strategy"], self.procs["strategy"]
        strategy.send(("measure", count, rate is not None))
        expect(strategy, proc, "measuring", 10)
        before = self.cpu()
        sim.fault("burst", conn=self.sim_conn, count=count, **({"rate": rate} if rate else {}))
        result: dict[str, Any] = expect(strategy, proc, "result", 30 + IDLE_S + count / (rate or 5000))
        after = self.cpu()
        for role in self.procs:
            result[f"cpu_s_{role}"] = after[role] - before[role]
        result["cpu_s"] = sum(after.values()) - sum(before.values())
        log(
            f"{self.name}: {result['count']} ticks, {result['tps']:.0f}/s"
            + (f", p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms" if rate else "")
        )
        return result

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of each of its processes (every thread: pyzmq's I/O thread too)."""
        return {role: cpu_seconds([proc.pid]) for role, proc in self.procs.items() if proc.pid is not None}

    def stop(self) -> None:
        """Terminate the processes (SIGTERM, then SIGKILL after 5 s)."""
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)


@contextlib.contextmanager
def pipelines(
    sim: SimProcess, names: list[tuple[str, str]], blocks: Iterator[int]
) -> Iterator[list[Pipeline]]:
    """Every variant's pipeline, started one after the other, each on its own codes; stopped on exit."""
    workdir = tempfile.mkdtemp(prefix="tv-ch-")
    started: list[Pipeline] = []
    try:
        for receiver, channel in names:
            log(f"starting {receiver}/{channel}")
            started.append(Pipeline(receiver, channel).start(sim, block(next(blocks)), workdir))
        yield started
    finally:
        for pipeline in started:
            pipeline.stop()
        shutil.rmtree(workdir, ignore_errors=True)


# --- the run ------------------------------------------------------------------------------------------


def per_mtick(result: dict[str, Any], key: str) -> float:
    """CPU seconds (``result[key]``) per million ticks of one measurement."""
    return result[key] / max(result["count"], 1) * 1e6


def in_order(result: dict[str, Any], count: int) -> bool:
    """Every tick arrived, in per-code order, without a gap."""
    return result["count"] == count and result["gaps"] == 0 and result["out_of_order"] == 0


def run(mode: Mode, variants: list[tuple[str, str]]) -> dict[str, Any]:
    """Measure the baselines and every variant; the figures of the BENCH_CHANNELS line."""
    token = "bench-" + uuid.uuid4().hex[:10]
    bursts = {  # measurement -> (ticks, pace)
        "burst": (mode.burst, None),
        "latency": (int(mode.latency_rate * mode.latency_s), mode.latency_rate),
        "low": (int(mode.low_rate * mode.low_s), mode.low_rate),
    }
    # 100 fresh codes for each pipeline and for each baseline run (a new connection each time).
    n_blocks = len(variants) + len(BASELINES) * len(bursts) * mode.rounds
    blocks = iter(range(1, n_blocks + 1))
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    # No tick loop (bursts only), no rate limit across connections, no heartbeat needed for an hour.
    sim_args = (
        "--tick-rate",
        "0",
        "--book-rate",
        "0",
        "--codes",
        str(100 * (n_blocks + 1)),  # block(k) is C{100k+1}USDT to C{100k+100}USDT
        "--token-gap-s",
        "0",
        "--heartbeat-timeout",
        "3600",
    )
    with SimProcess(token, *sim_args) as sim, pipelines(sim, variants, blocks) as running:
        log(f"simulator on port {sim.port}; {len(running)} pipelines subscribed")
        entries: list[Pipeline | str] = [*BASELINES, *running]
        for r in range(mode.rounds):
            log(
                f"round {r + 1}/{mode.rounds}: {mode.burst} ticks unpaced, then paced at"
                f" {mode.latency_rate:.0f}/s for {mode.latency_s:g} s and {mode.low_rate:.0f}/s"
                f" for {mode.low_s:g} s"
            )
            # Interleaved, and in another order each round: load from other work falls on all alike.
            k = r % len(entries)
            for entry in entries[k:] + entries[:k]:
                for kind, (count, rate) in bursts.items():
                    if isinstance(entry, str):
                        result = run_client(entry, sim, block(next(blocks)), count, rate=rate)
                        name = entry
                    else:
                        result, name = entry.measure(sim, count, rate), entry.name
                    result["in_order"] = in_order(result, count)
                    results.setdefault(name, {}).setdefault(kind, []).append(result)
    figures = {name: summary(runs) for name, runs in results.items()}
    bare = figures["bare"]["tps"]
    for values in figures.values():
        values["x_bare"] = values["tps"] / bare if bare > 0 else 0.0
    return {
        "bare_tps": bare,
        "bare_picows_tps": figures["bare_picows"]["tps"],
        "figures": figures,
        "order_ok": all(v["order_ok"] for v in figures.values()),
        "expected": [count for count, _ in bursts.values() for _ in range(mode.rounds)],
    }


def summary(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """One variant's figures: the median over the rounds of each."""

    def median(kind: str, figure: Callable[[dict[str, Any]], float]) -> float:
        return statistics.median(figure(r) for r in runs[kind])

    out = {
        "tps": median("burst", lambda r: r["tps"]),
        "cpu_s_per_mtick": median("burst", lambda r: per_mtick(r, "cpu_s")),
        "p50_ms": median("latency", lambda r: r["p50_ms"]),
        "p99_ms": median("latency", lambda r: r["p99_ms"]),
        "latency_tps": median("latency", lambda r: r["tps"]),
        "low_p50_ms": median("low", lambda r: r["p50_ms"]),
        "low_p99_ms": median("low", lambda r: r["p99_ms"]),
        "order_ok": all(r["in_order"] for kind_runs in runs.values() for r in kind_runs),
        "delivered": [r["count"] for kind_runs in runs.values() for r in kind_runs],
    }
    if "cpu_s_decoder" in runs["burst"][0]:
        for role in ROLES:
            out[f"cpu_{role}_s_per_mtick"] = median(
                "burst", functools.partial(per_mtick, key=f"cpu_s_{role}")
            )
    return out


def table(out: dict[str, Any], mode: Mode) -> str:
    """The markdown report."""
    title = (
        f"## channel candidates ({mode.name}: bursts of {mode.burst} ticks over 100 codes on one connection;"
        f" latency paced at {mode.latency_rate:.0f}/s for {mode.latency_s:g} s and {mode.low_rate:.0f}/s"
        f" for {mode.low_s:g} s; median of {mode.rounds} round(s))"
    )
    header = (
        "| variant | ticks/s | x bare | CPU s per Mtick (receiver + decoder + strategy)"
        f" | p50 / p99 ms @ {mode.latency_rate / 1000:g}k/s | p50 / p99 ms @ {mode.low_rate / 1000:g}k/s"
        " | every tick in order |"
    )
    lines = [title, "", header, "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for name, v in out.get("figures", {}).items():
        label = BASELINE_LABELS.get(name, name)
        cpu = f"{v['cpu_s_per_mtick']:.1f}"
        if "cpu_decoder_s_per_mtick" in v:
            cpu += " (" + " + ".join(f"{v[f'cpu_{role}_s_per_mtick']:.1f}" for role in ROLES) + ")"
        lines.append(
            f"| {label} | {v['tps']:.0f} | {v['x_bare']:.2f} | {cpu} | "
            f"{v['p50_ms']:.2f} / {v['p99_ms']:.2f} | {v['low_p50_ms']:.2f} / {v['low_p99_ms']:.2f} | "
            f"{'yes' if v['order_ok'] else '**no**'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the table and the BENCH_CHANNELS line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    group = p.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="one round; about 75 s on 2 cores")
    group.add_argument("--smoke", action="store_true", help="tiny counts: checks the machinery only")
    p.add_argument("--burst", type=int, default=None, help="ticks per throughput burst (default by mode)")
    p.add_argument("--rounds", type=int, default=None, help="rounds of every figure (default by mode)")
    p.add_argument("--receivers", default=",".join(RECEIVERS), help="comma-separated subset of %(default)s")
    p.add_argument("--channels", default=",".join(CHANNELS), help="comma-separated subset of %(default)s")
    args = p.parse_args(argv)
    mode = mode_of(smoke=args.smoke, quick=args.quick)
    mode = dataclasses.replace(mode, burst=args.burst or mode.burst, rounds=args.rounds or mode.rounds)
    variants = [(r, c) for r in args.receivers.split(",") for c in args.channels.split(",")]
    unknown = {r for r, _ in variants} - set(RECEIVERS) | {c for _, c in variants} - set(CHANNELS)
    if unknown:
        p.error(f"unknown receivers or channels: {sorted(unknown)}")

    os.chdir(ROOT)
    os.environ["PYTHONPATH"] = os.pathsep.join(x for x in (str(ROOT), os.environ.get("PYTHONPATH", "")) if x)
    out: dict[str, Any] = {"mode": mode.name}
    started = time.monotonic()
    failed = ""
    try:
        with hard_cap(mode.hard_cap_s):
            out.update(run(mode, variants))
    except Exception as exc:  # noqa: BLE001 - reported in the BENCH_CHANNELS line, exit code 1
        failed = f"{type(exc).__name__}: {exc}"
        log(f"FAILED: {failed}")
    out["elapsed_s"] = time.monotonic() - started
    out["ok"] = not failed and bool(out.get("order_ok"))
    if failed:
        out["error"] = failed
    sys.stdout.write(table(out, mode) + "\n\n")
    sys.stdout.write("BENCH_CHANNELS " + json.dumps(out, sort_keys=True) + "\n")
    sys.stdout.flush()
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
