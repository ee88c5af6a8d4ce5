"""The two Ray-free baselines of scripts/bench.py, each run as its own process.

``seed``: the design tickvisor started from, rebuilt faithfully: one websocket-client ``WebSocketApp``
thread, ``json.loads`` in ``on_message``, the strategy called inline. Only the wire format is the real
one (PROTOCOL.md), not the seed article's dialect, which the server would refuse.

``bare``: a plain websockets asyncio client, frames decoded with a msgspec typed decoder, no Ray:
the ceiling of one connection on this machine.

``bare_picows``: the same with picows (a Cython WebSocket client that hands each frame to a callback
straight from its receive buffer) instead of websockets: the ceiling with picows.

``raw``: not a consumer but a check of the simulator: it reads the socket and only counts WebSocket
frame headers (no parsing, no decoding), so its rate is what the simulator can deliver. It must be
well above every consumer's rate, or the benchmark measures the simulator.

Each subscribes the given codes with one 22004 (waiting and retrying on 429), print ``READY``, then
count ticks until ``--count`` have arrived or ``--idle-s`` passed without one, and print
``RESULT <json>`` (scripts.bench.count.TickCounter's summary plus the process's CPU seconds).

``subscribe_websockets`` and ``PicowsFeed`` are the subscription step of the websockets and picows
clients; scripts/bench/channels.py's receiver processes use them too.

    python scripts/bench/clients.py bare --url ws://127.0.0.1:PORT/quote-b-ws-api?token=T \
        --codes C0001USDT,C0002USDT --count 200000 [--latency]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypedDict

import msgspec
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

from scripts.bench.count import TickCounter

CMD_SUBSCRIBE_TRADES = 22004  # PROTOCOL.md "Commands"
CMD_SUBSCRIBE_TRADES_ACK = 22005
CMD_TRADE_PUSH = 22998
RATE_LIMITED = 429  # PROTOCOL.md "Error codes"
RETRY_AFTER_S = 1.1  # PROTOCOL.md "Limits": one subscription request per second per connection
SNAPSHOT_SKIP_S = 0.2  # after the 200: the subscription's snapshot ticks arrive (and are skipped) first
ACK_TIMEOUT_S = 20.0
MAX_FRAME_BYTES = 2**22


class _WsAppState(TypedDict):
    """What the websocket-client callbacks share: the request's seq_id, whether the burst counts yet,
    the CPU time at its start and the monotonic time of the last message.
    """

    seq_id: int
    ready: bool
    cpu0: float
    last: float


def subscribe_frame(codes: list[str], seq_id: int) -> str:
    """A 22004 with the whole set (PROTOCOL.md: every 22004 replaces the set)."""
    return json.dumps(
        {
            "cmd_id": CMD_SUBSCRIBE_TRADES,
            "seq_id": seq_id,
            "trace": f"bench-{seq_id}",
            "data": {"symbol_list": [{"code": c} for c in codes]},
        }
    )


def report(counter: TickCounter, cpu_s: float) -> None:
    """Print the RESULT line."""
    sys.stdout.write("RESULT " + json.dumps({**counter.result(), "cpu_s": cpu_s}) + "\n")
    sys.stdout.flush()


def ready() -> None:
    """Print the READY line."""
    sys.stdout.write("READY\n")
    sys.stdout.flush()


# --- the seed's design --------------------------------------------------------------------------------


def run_seed(url: str, codes: list[str], count: int, idle_s: float, *, latency: bool) -> None:
    """One WebSocketApp thread; ``json.loads`` per message; the strategy's work inline."""
    import websocket  # websocket-client, as the seed used

    counter = TickCounter()
    counter.reset(record_latency=latency)
    state: _WsAppState = {"seq_id": 1, "ready": False, "cpu0": 0.0, "last": time.monotonic()}
    monotonic, time_ns, loads = time.monotonic, time.time_ns, json.loads

    def on_open(ws: websocket.WebSocketApp) -> None:
        ws.send(subscribe_frame(codes, state["seq_id"]))

    def on_message(ws: websocket.WebSocketApp, message: str) -> None:
        msg = loads(message)
        now = monotonic()
        state["last"] = now
        if msg.get("cmd_id") == CMD_TRADE_PUSH:
            if not state["ready"]:
                return  # a snapshot from before the burst
            data = msg["data"]
            counter.add(data["code"], data["seq"], now)
            if latency:
                counter.latency(data["sent_ns"], time_ns())
            if counter.count >= count:
                ws.close()
        elif msg.get("cmd_id") == CMD_SUBSCRIBE_TRADES_ACK:
            if msg.get("ret") == RATE_LIMITED:
                time.sleep(RETRY_AFTER_S)
                state["seq_id"] += 1
                ws.send(subscribe_frame(codes, state["seq_id"]))
            elif msg.get("ret") == 200:
                time.sleep(0.2)  # let the subscription's snapshot ticks arrive (and be skipped) first
                state["ready"] = True
                state["cpu0"] = time.process_time()
                ready()

    app = websocket.WebSocketApp(url, on_open=on_open, on_message=on_message)

    def watchdog() -> None:  # ends the run when the burst is over or never comes
        while True:
            time.sleep(0.2)
            if time.monotonic() - state["last"] > idle_s:
                app.close()
                return

    threading.Thread(target=watchdog, daemon=True).start()
    app.run_forever()
    report(counter, time.process_time() - state["cpu0"])


# --- the bare ceilings: websockets and picows ---------------------------------------------------------


class Trade(msgspec.Struct, gc=False):
    code: str
    seq: int
    tick_time: int
    price: str
    volume: str = ""
    turnover: str = ""
    trade_direction: int = 0
    sent_ns: int = 0


class TradePush(msgspec.Struct, tag_field="cmd_id", tag=CMD_TRADE_PUSH, gc=False):
    data: Trade


class Ack(msgspec.Struct, tag_field="cmd_id", tag=CMD_SUBSCRIBE_TRADES_ACK):
    ret: int
    msg: str = ""


_decode_ack = msgspec.json.Decoder(TradePush | Ack).decode


async def subscribe_websockets(ws: ClientConnection, codes: list[str]) -> None:
    """Subscribe ``codes`` with one 22004 (again after ``RETRY_AFTER_S`` on 429), then skip the snapshot.

    Raises:
        ConnectionError: the server refused the subscription with a ``ret`` other than 200 or 429.
        TimeoutError: no answer within ``ACK_TIMEOUT_S``.

    """
    seq_id = 1
    await ws.send(subscribe_frame(codes, seq_id))
    while True:
        frame = _decode_ack(await asyncio.wait_for(ws.recv(decode=False), ACK_TIMEOUT_S))
        if type(frame) is Ack:
            if frame.ret == 200:
                break
            if frame.ret != RATE_LIMITED:
                raise ConnectionError(f"subscription refused: {frame.ret} {frame.msg}")
            await asyncio.sleep(RETRY_AFTER_S)
            seq_id += 1
            await ws.send(subscribe_frame(codes, seq_id))
    skip_until = time.monotonic() + SNAPSHOT_SKIP_S
    while (left := skip_until - time.monotonic()) > 0:
        try:
            await asyncio.wait_for(ws.recv(decode=False), left)
        except TimeoutError:
            break


class PicowsFeed(WSListener):
    """A picows listener: subscribes ``codes`` on connect, skips the snapshot, then hands frames on.

    Once ``ready`` is done, every text frame's payload goes to ``on_frame(payload, last_in_buffer)``;
    ``last_in_buffer`` is picows' flag for the last frame of what one socket read returned (the receive
    buffer is drained). A close frame from the server is echoed and the socket closed (picows leaves
    the closing handshake to the listener); its code is kept in ``close_code``.

    Args:
        codes: the trade codes to subscribe, with one 22004 (again after ``RETRY_AFTER_S`` on 429).
        on_frame: called with each text frame's payload (bytes, copied out of picows' buffer).

    """

    def __init__(self, codes: list[str], on_frame: Callable[[bytes, bool], None]) -> None:
        super().__init__()
        self.codes = codes
        self.on_frame = on_frame
        self.loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[None] = self.loop.create_future()
        self.close_code: int | None = None
        self.transport: WSTransport | None = None
        self._live = False
        self._seq_id = 1

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self._subscribe()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is WSMsgType.TEXT:
            if self._live:  # the hot path
                self.on_frame(frame.get_payload_as_bytes(), frame.last_in_buffer)
            elif not self.ready.done():
                self._subscribing(_decode_ack(frame.get_payload_as_bytes()))
        elif kind is WSMsgType.CLOSE:
            self.close_code = frame.get_close_code().value
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:  # noqa: ARG002 - picows' signature
        if not self.ready.done():
            reason = f"closed before subscribed (close code {self.close_code})"
            self.ready.set_exception(ConnectionError(reason))

    def _subscribe(self) -> None:
        assert self.transport is not None
        self.transport.send(WSMsgType.TEXT, subscribe_frame(self.codes, self._seq_id).encode())

    def _subscribing(self, frame: TradePush | Ack) -> None:
        if type(frame) is not Ack:
            return  # a snapshot tick before the answer
        if frame.ret == 200:
            self.loop.call_later(SNAPSHOT_SKIP_S, self._go_live)
        elif frame.ret == RATE_LIMITED:
            self._seq_id += 1
            self.loop.call_later(RETRY_AFTER_S, self._subscribe)
        else:
            self.ready.set_exception(ConnectionError(f"subscription refused: {frame.ret} {frame.msg}"))

    def _go_live(self) -> None:
        if not self.ready.done():
            self._live = True
            self.ready.set_result(None)


async def connect_picows(url: str, codes: list[str], on_frame: Callable[[bytes, bool], None]) -> WSTransport:
    """Open a picows connection, subscribe ``codes`` and skip the snapshot (see ``PicowsFeed``).

    Raises:
        ConnectionError: refused, or closed before subscribed.
        TimeoutError: not subscribed within ``ACK_TIMEOUT_S``.

    """
    transport, feed = await ws_connect(
        lambda: PicowsFeed(codes, on_frame), url, max_frame_size=MAX_FRAME_BYTES
    )
    assert isinstance(feed, PicowsFeed)
    try:
        await asyncio.wait_for(feed.ready, ACK_TIMEOUT_S)
    except BaseException:
        transport.disconnect()
        raise
    return transport


async def run_bare_picows(url: str, codes: list[str], count: int, idle_s: float, *, latency: bool) -> None:
    """Picows client; msgspec typed decoding in the frame callback; the strategy's work inline."""
    decode = msgspec.json.Decoder(TradePush | Ack).decode
    counter = TickCounter()
    counter.reset(record_latency=latency)
    monotonic, time_ns = time.monotonic, time.time_ns
    done = asyncio.get_running_loop().create_future()

    def on_frame(payload: bytes, last_in_buffer: bool) -> None:  # noqa: ARG001, FBT001 - picows' flag
        frame = decode(payload)
        if type(frame) is TradePush:
            data = frame.data
            counter.add(data.code, data.seq, monotonic())
            if latency:
                counter.latency(data.sent_ns, time_ns())
            if counter.count >= count and not done.done():
                done.set_result(None)

    transport = await connect_picows(url, codes, on_frame)
    cpu0 = time.process_time()
    ready()
    seen = -1
    while not done.done() and counter.count != seen:  # ends when the burst is over or never comes
        seen = counter.count
        await asyncio.wait([done], timeout=idle_s)
    transport.disconnect()
    report(counter, time.process_time() - cpu0)


async def run_bare(url: str, codes: list[str], count: int, idle_s: float, *, latency: bool) -> None:
    """Websockets asyncio client; msgspec typed decoding; the strategy's work inline."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    decode = msgspec.json.Decoder(TradePush | Ack).decode
    counter = TickCounter()
    counter.reset(record_latency=latency)
    monotonic, time_ns = time.monotonic, time.time_ns
    async with connect(
        url, compression=None, ping_interval=None, max_queue=None, max_size=MAX_FRAME_BYTES
    ) as ws:
        await subscribe_websockets(ws, codes)
        cpu0 = time.process_time()
        ready()
        progress = {"count": -1}

        async def watchdog() -> None:  # ends the run when the burst is over or never comes
            while True:
                await asyncio.sleep(idle_s)
                if counter.count == progress["count"]:
                    ws.transport.abort()
                    return
                progress["count"] = counter.count

        guard = asyncio.get_running_loop().create_task(watchdog())
        recv = ws.recv
        try:
            while counter.count < count:
                frame = decode(await recv(decode=False))
                if type(frame) is TradePush:
                    data = frame.data
                    counter.add(data.code, data.seq, monotonic())
                    if latency:
                        counter.latency(data.sent_ns, time_ns())
        except ConnectionClosed:
            pass
        guard.cancel()
    report(counter, time.process_time() - cpu0)


# --- the simulator's delivery rate --------------------------------------------------------------------


def run_raw(url: str, codes: list[str], count: int, idle_s: float) -> None:
    """Handshake by hand, subscribe, then count frames by their headers only."""
    import base64
    import os
    import socket
    import struct
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=idle_s)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(65536)
    buf = buf[buf.index(b"\r\n\r\n") + 4 :]

    def send_subscribe(seq_id: int) -> None:
        payload = subscribe_frame(codes, seq_id).encode()
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        header = (
            struct.pack("!BBH", 0x81, 0x80 | 126, len(payload))
            if len(payload) >= 126
            else bytes((0x81, 0x80 | len(payload)))
        )
        sock.sendall(header + mask + masked)

    def read_frame() -> bytes:
        nonlocal buf
        while True:
            n = len(buf)
            if n >= 2:
                length, start = buf[1] & 0x7F, 2
                if length == 126:
                    length, start = (struct.unpack_from("!H", buf, 2)[0], 4) if n >= 4 else (-1, 0)
                elif length == 127:
                    length, start = (struct.unpack_from("!Q", buf, 2)[0], 10) if n >= 10 else (-1, 0)
                if length >= 0 and n >= start + length:
                    payload, buf = buf[start : start + length], buf[start + length :]
                    return payload
            buf += sock.recv(65536)

    seq_id = 1
    send_subscribe(seq_id)
    while True:
        msg = json.loads(read_frame())
        if msg.get("cmd_id") != CMD_SUBSCRIBE_TRADES_ACK:
            continue
        if msg.get("ret") != RATE_LIMITED:
            break
        time.sleep(RETRY_AFTER_S)
        seq_id += 1
        send_subscribe(seq_id)
    time.sleep(0.3)  # the snapshot ticks, skipped below
    sock.setblocking(False)
    try:
        while sock.recv(1 << 20):
            pass
    except BlockingIOError:
        pass
    sock.setblocking(True)
    sock.settimeout(idle_s)
    cpu0 = time.process_time()
    ready()
    frames, nbytes, pos = 0, 0, 0
    data = bytearray()
    first_at = last_at = 0.0
    recv_into_size = 1 << 20
    while frames < count:
        try:
            chunk = sock.recv(recv_into_size)
        except TimeoutError:
            break
        if not chunk:
            break
        now = time.monotonic()
        if not first_at:
            first_at = now
        last_at = now
        nbytes += len(chunk)
        data += chunk
        n = len(data)
        while pos + 2 <= n:  # walk the headers: server frames are unmasked
            length = data[pos + 1] & 0x7F
            if length == 126:
                if pos + 4 > n:
                    break
                length, start = (data[pos + 2] << 8) | data[pos + 3], pos + 4
            elif length == 127:
                if pos + 10 > n:
                    break
                length, start = struct.unpack_from("!Q", data, pos + 2)[0], pos + 10
            else:
                start = pos + 2
            if start + length > n:
                break
            pos = start + length
            frames += 1
        del data[:pos]
        pos = 0
    sock.close()
    span = last_at - first_at
    sys.stdout.write(
        "RESULT "
        + json.dumps(
            {
                "count": frames,
                "span_s": span,
                "bytes": nbytes,
                "tps": frames / span if span > 0 else 0.0,
                "cpu_s": time.process_time() - cpu0,
            }
        )
        + "\n"
    )
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    """Run one baseline client."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    p.add_argument("kind", choices=["seed", "bare", "bare_picows", "raw"])
    p.add_argument("--url", required=True)
    p.add_argument("--codes", required=True, help="comma-separated")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--idle-s", type=float, default=10.0)
    p.add_argument("--latency", action="store_true")
    args = p.parse_args(argv)
    codes = args.codes.split(",")
    if args.kind == "raw":
        run_raw(args.url, codes, args.count, args.idle_s)
    elif args.kind == "seed":
        run_seed(args.url, codes, args.count, args.idle_s, latency=args.latency)
    elif args.kind == "bare_picows":
        asyncio.run(run_bare_picows(args.url, codes, args.count, args.idle_s, latency=args.latency))
    else:
        asyncio.run(run_bare(args.url, codes, args.count, args.idle_s, latency=args.latency))
    return 0


if __name__ == "__main__":
    sys.exit(main())
