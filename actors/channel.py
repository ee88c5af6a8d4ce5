"""The data-path channel: batches from one sender to one receiver outside Ray, acknowledged back.

The hops (docs/architecture.md, "Data path")::

    Connection ──raw frames──▶ Decoder ──one tick batch per strategy──▶ Strategy
               channel (replay)          channel (drops counted)

Each hop is a stream socket: a Unix-domain socket when both ends are on one node, TCP on the
receiver's node address otherwise. The Unix socket is in Linux's abstract namespace (no file to leave
behind); where that namespace is missing (macOS, or a kernel or sandbox without it) it is a file in a
private directory (0700, this process's, removed at exit). Every message is a
4-byte big-endian length and one msgpack array ``[number, missed, body]``; the receiver answers with
the same framing, ``number``: every batch up to it is done with, and a last ``nil`` when it closes on
purpose (its actor stops): that break is logged at DEBUG, a break without it (the receiver died) at
WARNING. A stream's first frame is the
receiver's key (random per receiver, part of its address): a stream that does not begin with it
(another process on the node, or anyone who can reach the TCP port) is dropped before any of its
frames is read as a batch. Ray carries only the address: the
receiver actor serves it from a Ray method, the sender asks for it (``resolve``) when it connects and
again after every break, so either end may restart (SIGKILL included) and the other re-wires by itself.

The shell only moves bytes. What may be queued, what a break costs and what is counted as missed are
decided by ``actors.core.routing.Outbox``; the receiving strategy's side by ``actors.core.delivery``.
Measured against pyzmq (``python -m scripts.bench.channels``): asyncio Unix sockets had the better p99.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import hmac
import os
import secrets
import shutil
import socket
import struct
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec

from actors.core.backoff import backoff
from actors.core.routing import Outbox
from actors.log import logger

HEADER = struct.Struct(">I")
#: A bigger frame is a bug or a stranger on the socket: the stream is dropped.
MAX_FRAME_BYTES = 1 << 28
#: Re-wiring: first retry after 20 ms, at most 1 s apart, so a restarted end is found within a second.
REWIRE_INITIAL_S = 0.02
REWIRE_MAX_S = 1.0
RESOLVE_TIMEOUT_S = 10.0


class Address(msgspec.Struct, frozen=True):
    """Where a receiver listens: ``uds`` on node ``node``, ``host``:``port`` from anywhere; ``key``
    opens its streams (kept out of the repr, like a token).
    """

    node: str
    uds: str
    host: str
    port: int
    key: str = msgspec.field(default="")

    def __repr__(self) -> str:
        return f"Address(node={self.node!r}, uds={self.uds!r}, host={self.host!r}, port={self.port})"


class FrameTooBig(ValueError):
    """A length prefix beyond ``MAX_FRAME_BYTES``: not our peer, or a bug."""

    def __init__(self, size: int) -> None:
        super().__init__(f"channel frame of {size} bytes exceeds {MAX_FRAME_BYTES}; dropping the stream")
        self.size = size


class _Framing(asyncio.Protocol):
    """Length-prefixed frames in, one ``frame_received`` per frame."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        start, end = 0, len(buf)
        while end - start >= 4:
            (size,) = HEADER.unpack_from(buf, start)
            if size > MAX_FRAME_BYTES:
                logger.error("channel: {}", FrameTooBig(size))
                if self.transport is not None:
                    self.transport.abort()
                return
            if end - start - 4 < size:
                break
            self.frame_received(bytes(buf[start + 4 : start + 4 + size]))
            start += 4 + size
        if start:
            del buf[:start]

    def frame_received(self, frame: bytes) -> None:
        raise NotImplementedError

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: ARG002 - EOF or error alike
        self.transport = None
        if not self.closed.done():
            self.closed.set_result(None)

    def write(self, payload: bytes) -> bool:
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        transport.write(HEADER.pack(len(payload)) + payload)
        return True


_decode = msgspec.msgpack.Decoder().decode
_encode = msgspec.msgpack.Encoder().encode
#: The receiver's last frame when it closes a stream on purpose (msgpack nil, where acks are numbers).
GOODBYE = _encode(None)


class Peer(_Framing):
    """The receiver's end of one sender's stream."""

    def __init__(self, receiver: Receiver) -> None:
        super().__init__()
        self._receiver = receiver
        self._reading = False
        self._ack_due = 0  # the highest number acknowledged and not yet written
        self.ack_writes = 0
        self._opened: bool | None = None  # whether the stream began with the receiver's key

    def frame_received(self, frame: bytes) -> None:
        """One frame from the sender: the key first, then batches."""
        if not self._opened:
            if self._opened is None:
                self._open(frame)
            return  # the key, or whatever follows a wrong one
        number, missed, body = _decode(frame)
        self._receiver.on_message(self, number, missed, body)

    def _open(self, frame: bytes) -> None:
        self._opened = hmac.compare_digest(frame, self._receiver.key.encode())
        if self._opened:
            return
        self._receiver.strangers += 1
        logger.error(
            "channel {}: dropped a stream that did not begin with this receiver's key (not a tickvisor "
            "sender of this job; {} so far)",
            self._receiver.name,
            self._receiver.strangers,
        )
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        """Bytes from the socket (asyncio.Protocol), cut into frames."""
        self._reading = True
        try:
            super().data_received(data)
            if self._receiver.on_read_end is not None:
                self._receiver.on_read_end()
        finally:
            self._reading = False
            if self._ack_due:
                self._write_ack()

    def ack(self, number: int) -> None:
        """Every batch up to ``number`` is done with (dropped silently when the sender is gone).

        Given while a read is handled (a receiver done with each batch as it arrives), it is written
        at the end of that read: the acknowledgements of every batch one read brought in become one
        write. Given at any other time (a strategy's hook finished), it is written at once, so that
        the sender sees room as soon as there is some.
        """
        self._ack_due = max(self._ack_due, number)
        if not self._reading:
            self._write_ack()

    def _write_ack(self) -> None:
        number, self._ack_due = self._ack_due, 0
        self.ack_writes += 1
        self.write(_encode(number))

    def connection_lost(self, exc: Exception | None) -> None:
        """The sender's stream ended (asyncio.Protocol): the peer is forgotten."""
        super().connection_lost(exc)
        self._receiver.peers.discard(self)
        if self._receiver.on_lost is not None:
            self._receiver.on_lost(self)


class Receiver:
    """Listens on a Unix-domain socket and on TCP; ``on_message(peer, number, missed, body)`` per batch,
    then ``on_read_end()`` once the batches one read brought in were handed over (a receiver that
    works on them together: the acknowledgements it gives there go out with that read's).
    """

    def __init__(
        self,
        name: str,
        on_message: Callable[[Peer, int, int, Any], None],
        *,
        node: str,
        host: str,
        on_lost: Callable[[Peer], None] | None = None,
        on_read_end: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.on_message = on_message
        self.on_lost = on_lost
        self.on_read_end = on_read_end
        self.peers: set[Peer] = set()
        self.key = secrets.token_hex(16)
        self.strangers = 0  # streams dropped for want of the key
        self._node = node
        self._host = host
        self._servers: list[asyncio.AbstractServer] = []
        self._uds = ""
        self._address: asyncio.Future[Address] = asyncio.get_running_loop().create_future()
        self._task = asyncio.get_running_loop().create_task(self._start())

    async def _start(self) -> None:
        loop = asyncio.get_running_loop()
        uds = self._uds = unix_socket_path(self.name)
        try:
            listener = _unix_listener(uds)
            self._servers.append(await loop.create_unix_server(self._accept, sock=listener))
            tcp = await loop.create_server(self._accept, self._host, 0)
            self._servers.append(tcp)
            port = tcp.sockets[0].getsockname()[1]
        except Exception as exc:  # noqa: BLE001 - handed to whoever waits for the address
            self._address.set_exception(exc)
            return
        self._address.set_result(Address(self._node, uds, self._host, port, self.key))

    def _accept(self) -> Peer:
        peer = Peer(self)
        self.peers.add(peer)
        return peer

    async def address(self) -> Address:
        """Where senders connect (after the sockets listen)."""
        return await asyncio.shield(self._address)

    def close(self) -> None:
        """Stop listening and end every stream, telling its sender that this is on purpose (``GOODBYE``)."""
        for server in self._servers:
            server.close()
        if self._uds and not self._uds.startswith("\0"):  # a file: gone with the listener
            with contextlib.suppress(OSError):
                Path(self._uds).unlink()
        for peer in list(self.peers):
            if peer.write(GOODBYE) and peer.transport is not None:
                peer.transport.close()  # after what is buffered: the goodbye goes out first


class _Link(_Framing):
    """The sender's end: reads acknowledgements."""

    def __init__(self, sender: Sender) -> None:
        super().__init__()
        self._sender = sender
        self.goodbye = False  # the receiver closed this stream on purpose

    def frame_received(self, frame: bytes) -> None:
        number = _decode(frame)
        if number is None:
            self.goodbye = True
        else:
            self._sender.acked(number)


class Sender:
    """Sends bodies to one receiver, found by ``resolve()`` (an awaitable of its ``Address``, or None
    when it does not exist yet), re-wiring after every break. ``send`` never waits: what the outbox
    cannot hold is counted there.
    """

    def __init__(
        self,
        name: str,
        resolve: Callable[[], Awaitable[Address | None]],
        outbox: Outbox[Any],
        *,
        node: str,
    ) -> None:
        self.name = name
        self.outbox = outbox
        self.breaks = 0
        self.last_error = ""
        self._resolve = resolve
        self._node = node
        self._link: _Link | None = None
        self._acked = asyncio.Event()
        self._up = asyncio.Event()
        self._closed = False
        self._task = asyncio.get_running_loop().create_task(self._run())

    @property
    def connected(self) -> bool:
        """Whether a stream to the receiver is open now."""
        return self._link is not None

    def send(self, body: Any, count: int) -> bool:
        """Queue ``body`` (``count`` records) and write it if connected. False: dropped and counted."""
        if not self.outbox.put(body, count):
            return False
        if self._link is not None:
            self._write(self._link)
        return True

    def _write(self, link: _Link) -> None:
        for out in self.outbox.take():
            link.write(_encode(out))

    def acked(self, number: int) -> None:
        """The receiver acknowledged batch ``number``: the window has room for more."""
        outbox = self.outbox
        outbox.acked(number)
        if outbox.queued and self._link is not None:
            self._write(self._link)  # the window has room again (an outbox with a merge rule)
        self._acked.set()

    async def wait_acked(self) -> None:
        """Wait for the next acknowledgement (or a break)."""
        self._acked.clear()
        await self._acked.wait()

    async def wait_connected(self) -> None:
        """Wait until a stream to the receiver is open."""
        await self._up.wait()

    async def _run(self) -> None:
        delays = backoff(initial=REWIRE_INITIAL_S, cap=REWIRE_MAX_S, jitter=0.5)
        while not self._closed:
            try:
                address = await asyncio.wait_for(self._resolve(), RESOLVE_TIMEOUT_S)
                if address is None:
                    raise LookupError(f"{self.name}: no such receiver yet")  # noqa: TRY301 - no receiver yet is retried like a failure to open
                link = await self._open(address)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the receiver is down or restarting: retry
                self.last_error = f"{type(exc).__name__}: {exc}"
                await asyncio.sleep(next(delays))
                continue
            delays = backoff(initial=REWIRE_INITIAL_S, cap=REWIRE_MAX_S, jitter=0.5)
            self._link = link
            self._up.set()
            self._write(link)
            await link.closed
            self._up.clear()
            self._link = None
            self.breaks += 1
            lost = self.outbox.broken()
            self._acked.set()
            if self._closed:
                continue
            if link.goodbye:  # its actor stops (a clean stop of the job): nothing to act on
                logger.debug("channel {}: the receiver closed; {} records lost, re-wiring", self.name, lost)
            else:
                logger.warning(
                    "channel {}: the receiver went away; {} records lost, re-wiring", self.name, lost
                )

    async def _open(self, address: Address) -> _Link:
        loop = asyncio.get_running_loop()
        if address.node == self._node and address.uds:
            sock = await _unix_connected(address.uds)
            _, link = await loop.create_unix_connection(lambda: _Link(self), sock=sock)
        else:
            _, link = await loop.create_connection(lambda: _Link(self), address.host, address.port)
        link.write(address.key.encode())  # the first frame opens the stream (Peer._open)
        return link

    def close(self) -> None:
        """Stop sending and re-wiring."""
        self._closed = True
        self._task.cancel()
        link = self._link
        if link is not None and link.transport is not None:
            link.transport.close()


LOOPBACK = "127.0.0.1"
#: sun_path holds 108 bytes on Linux, 104 on macOS: a longer temporary directory is not used.
MAX_SOCKET_DIR_CHARS = 60


@functools.cache
def abstract_namespace() -> bool:
    """Whether Unix sockets can be bound in Linux's abstract namespace here (probed once)."""
    if not sys.platform.startswith("linux"):
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(f"\0tickvisor-probe-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        except OSError:
            return False
    return True


@functools.cache
def _socket_dir() -> str:
    """Make this process's private directory for socket files: mode 0700 (mkdtemp), removed at exit."""
    base = tempfile.gettempdir()
    if len(base) > MAX_SOCKET_DIR_CHARS:
        base = "/tmp"  # noqa: S108 - only a private mkdtemp directory is made in it
    path = tempfile.mkdtemp(prefix="tickvisor-", dir=base)
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def unix_socket_path(name: str) -> str:
    """Where a receiver named ``name`` listens on this node.

    In the abstract namespace (a leading NUL: no file, the kernel frees it with the process) where it
    exists, else a file in this process's private directory.
    """
    if abstract_namespace():
        return f"\0tickvisor-{name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    return os.path.join(_socket_dir(), f"{uuid.uuid4().hex[:16]}.sock")  # noqa: PTH118 - a str for bind


# The Unix sockets are made here and handed to the loop (``sock=``): uvloop, which Ray runs async actors
# on when it is installed, refuses a Linux abstract-namespace path (a leading NUL) given as ``path``.


def _unix_listener(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.listen(socket.SOMAXCONN)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


async def _unix_connected(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, path)
    except BaseException:
        sock.close()
        raise
    return sock


def local_node() -> tuple[str, str]:
    """The Ray node id of this process, and where a receiver's TCP socket listens: loopback while the
    cluster has one node (peers on this node use the Unix socket anyway), the node's address once it
    has more, so that actors on other nodes reach it.
    """
    import ray  # noqa: PLC0415 - only the shells that run under Ray call this

    if not ray.is_initialized():  # a plain instance outside Ray (tests): this node only
        return "", LOOPBACK
    node = ray.get_runtime_context().get_node_id()
    alive = sum(1 for n in ray.nodes() if n.get("Alive"))
    return node, ray.util.get_node_ip_address() if alive > 1 else LOOPBACK
